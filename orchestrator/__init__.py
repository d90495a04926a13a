"""sernas' orchestrator: experiments of many DARTS searches with Ray Tune and Optuna (docs/).

From Python, ``orchestrator.run(config)`` does what ``sernas search`` does (``orchestrator.api``);
``orchestrator.leaderboard.connect`` queries the results. Importing this package loads neither
Ray nor torch.
"""

from orchestrator.api import run

__all__ = ["run"]
