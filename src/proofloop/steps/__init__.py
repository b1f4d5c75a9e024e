"""Proof steps and symbolic checks (issue 11, items 1 and 2).

split.py splits a proof into steps with offsets (pure, lossless); relations.py finds the
relations its mathematics states and the domain its text states (pure); symbolic.py checks
them with SymPy in a worker process (algebra.py, imported only there). Nothing is imported
here, so that `import proofloop.steps.split` stays free of SymPy.
"""
