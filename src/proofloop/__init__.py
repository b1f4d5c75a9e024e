"""proofloop: self-verifiable mathematical reasoning (the DeepSeekMath-V2 recipe) as software.

Layers (data flows one way; lower layers never import upper ones):
    protocol  <- roles <- search <- (cli, bench)
    models    (providers + the one wrapper that owns retries, timeouts, caching, accounting)
    store     (SQLite run store; implements the models' CallCache interface)
See docs/ARCHITECTURE.md.
"""

__version__ = "0.1.0"
