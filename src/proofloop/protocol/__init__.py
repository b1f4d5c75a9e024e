"""The text protocol of DeepSeekMath-V2: prompt templates, output parsers, result types. Pure.

    >>> from proofloop.protocol import parse_verification, FINAL_SCORE_PHRASE
    >>> parse_verification(f"Step 2 is unjustified.\\n{FINAL_SCORE_PHRASE} \\\\boxed{{0.5}}").score
    0.5
"""

from proofloop.protocol.parsers import (extract_issues, parse_meta_verification, parse_proof, parse_score,
                                        parse_verification, proof_for_verification, split_reasoning,
                                        user_proof)
from proofloop.protocol.templates import (EVAL_START, FINAL_SCORE_PHRASE, META_FINAL_PHRASE, META_START,
                                          OPTIONAL_PLACEHOLDERS, REFINE_HEADER, REQUIRED_PLACEHOLDERS,
                                          ROLE_MARKERS, SELF_EVAL_HEADER, SOLUTION_HEADER, Templates,
                                          detect_role, format_candidates, generation_messages,
                                          message_text, meta_verification_messages,
                                          refinement_messages, render, verification_messages)
from proofloop.protocol.types import (SCORES, ParsedAnalysis, ParsedProof, ParsedScore, ParseStatus,
                                      SplitReasoning)

__all__ = [
    "EVAL_START", "FINAL_SCORE_PHRASE", "META_START", "META_FINAL_PHRASE", "SOLUTION_HEADER",
    "SELF_EVAL_HEADER", "REFINE_HEADER", "REQUIRED_PLACEHOLDERS", "OPTIONAL_PLACEHOLDERS", "SCORES",
    "ROLE_MARKERS", "detect_role", "message_text",
    "Templates", "render", "format_candidates", "generation_messages", "verification_messages",
    "meta_verification_messages", "refinement_messages",
    "split_reasoning", "parse_score", "parse_proof", "parse_verification", "parse_meta_verification",
    "extract_issues", "proof_for_verification", "user_proof",
    "ParseStatus", "ParsedScore", "ParsedProof", "ParsedAnalysis", "SplitReasoning",
]
