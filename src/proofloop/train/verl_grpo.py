"""GRPO for verl that leaves out completions without a reward: the advantage estimator
`grpo_judged`. Only for verl's own environment (`make verl-env`): it imports torch and verl.

A failed judge gives its completion no reward, which compute_score (train/verl.py) reports as
a NaN "score". verl's built-in `grpo` would take that NaN into the group's mean and standard
deviation and poison every advantage of the group; `grpo_judged` computes each group's mean
and standard deviation over the completions that have a reward only and gives the others an
advantage of 0, so they add nothing to the policy gradient. Without a NaN it is verl's `grpo`
(the same statistics: mean, unbiased std, a group of one counts as mean 0 and std 1).

verl finds the estimator by importing this module in each of its processes: set
`VERL_USE_EXTERNAL_MODULES=proofloop.train.verl_grpo` before `ray start` on every node (the
launch script in recipes/verl does), and `algorithm.adv_estimator=grpo_judged`.

    >>> import torch
    >>> rewards = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, float("nan")], [0.0, 0.5]])
    >>> adv, _ = grpo_judged_advantage(rewards, torch.ones(4, 2), ["a", "a", "a", "b"])
    >>> [round(x, 3) for x in adv[:, 0].tolist()]   # "a": the NaN is left out; "b" alone: 0.5 - 0
    [0.707, -0.707, 0.0, 0.5]
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from verl.trainer.ppo.core_algos import register_adv_est

NAME = "grpo_judged"


@register_adv_est(NAME)
def grpo_judged_advantage(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: Any,
                          epsilon: float = 1e-6, norm_adv_by_std_in_grpo: bool | None = None, config: Any = None,
                          **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Outcome advantages per group of `index` over the rewarded completions only (a NaN
    reward: advantage 0). verl passes `config` (algorithm.*), where norm_adv_by_std_in_grpo is."""
    if norm_adv_by_std_in_grpo is None:
        norm_adv_by_std_in_grpo = bool(config.get("norm_adv_by_std_in_grpo", True)) if config is not None else True
    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)
        rewarded = ~torch.isnan(scores)
        groups: dict[Any, list[int]] = defaultdict(list)
        for i, uid in enumerate(index):
            if rewarded[i]:
                groups[uid].append(i)
        advantages = torch.zeros_like(scores)
        for members in groups.values():
            group = scores[members]
            mean, std = (group.mean(), group.std()) if len(members) > 1 else (torch.tensor(0.0), torch.tensor(1.0))
            centred = group - mean
            advantages[members] = centred / (std + epsilon) if norm_adv_by_std_in_grpo else centred
        advantages = advantages.unsqueeze(-1) * response_mask
    return advantages, advantages
