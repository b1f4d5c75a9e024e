"""Training self-verifying models (DeepSeekMath-V2's recipe): the rewards so far (rewards.py,
pure); datasets, the TRL and verl adapters and the reward server will live here too."""
