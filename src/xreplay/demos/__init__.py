"""Training demos behind ``xreplay demo [NAME]``: real agents learning through xreplay's buffers.

============  ===============================================================================
``dqn``       DQN + prioritized replay + 3-step returns on CartPole-v1 (native TransitionBuffer),
              checkpoints and exact resume
``qmix``      QMIX on level-based foraging through the PyMARL drop-in (``--per``: pymarl2's
              prioritized episode replay)
``r2d2``      recurrent Q-network from prioritized sequence slices with burn-in vs a feed-forward
              net, on CartPole with the velocities hidden
============  ===============================================================================

Each needs the ``demo`` extra (``pip install 'xreplay[demo]'``); without it
the command names what to install.
"""

from __future__ import annotations

from xreplay.demos.common import DemoError

__all__ = ["DEMOS", "DemoError"]

#: Demo name -> one-line description (the order of ``xreplay demo --help``).
DEMOS = {
    "dqn": "DQN + prioritized replay + 3-step returns on CartPole-v1 (default)",
    "qmix": "QMIX on lbforaging through xreplay.compat.pymarl (--per: prioritized episodes)",
    "r2d2": "recurrent vs feed-forward Q-network from prioritized sequences, CartPole without velocities",
}
