"""The DI-engine drop-in: DequeBuffer + PriorityExperienceReplay in a DQN loop on CartPole-v1.

Only the imports change (``ding.data.buffer`` becomes ``xreplay.compat.ding``).
Transitions are pushed as dicts with ``meta={"priority": ...}``; ``sample(n)``
returns ``BufferedData(data, index, meta)`` with ``meta["priority_IS"]``
(importance weights, beta annealed towards 1); new priorities go back with
``buffer.update(index, data, meta={"priority": ...})`` per record as in
DI-engine, or in one call with ``per.update_priorities(indices, priorities)``
(an xreplay extension, used here). Sampling draws from numpy's global RNG as
DI-engine does, so ``np.random.seed`` makes a run repeatable. Needs gymnasium.

    python examples/ding_dropin.py            # 25,000 steps
    python examples/ding_dropin.py --smoke    # seconds (CI)

Full run (2 cores shared with other jobs, load 4.7): greedy return 197.2 over 10 episodes after 25,000
steps (one-step targets; a random policy scores about 20), 156 s wall.
"""

import argparse
import random

import gymnasium
import numpy as np
import torch
from torch import nn

from xreplay.compat.ding import DequeBuffer, PriorityExperienceReplay


def greedy_return(net, episodes=10):
    env, total = gymnasium.make("CartPole-v1"), 0.0
    for i in range(episodes):
        obs, _ = env.reset(seed=10_000 + i)
        done = False
        while not done:
            with torch.no_grad():
                obs, reward, terminated, truncated, _ = env.step(int(net(torch.as_tensor(obs)).argmax()))
            total, done = total + float(reward), terminated or truncated
    return total / episodes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    args = parser.parse_args(argv)
    steps = 1_200 if args.smoke else 25_000
    torch.manual_seed(0)
    torch.set_num_threads(1)
    np.random.seed(0)  # DI-engine's prioritized strata come from numpy's global RNG
    random.seed(0)
    rng = np.random.default_rng(0)

    buffer = DequeBuffer(size=50_000)
    per = PriorityExperienceReplay(buffer, IS_weight=True, IS_weight_anneal_train_iter=steps)
    buffer.use(per)

    net = nn.Sequential(nn.Linear(4, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))
    target = nn.Sequential(nn.Linear(4, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))
    target.load_state_dict(net.state_dict())
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4)
    gamma = 0.99

    env = gymnasium.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    for step in range(steps):
        epsilon = max(0.02, 1.0 - step / 8_000)
        with torch.no_grad():
            action = int(rng.integers(2)) if rng.random() < epsilon else int(net(torch.as_tensor(obs)).argmax())
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.push({"obs": obs, "action": action, "reward": reward, "next_obs": next_obs, "done": terminated})
        obs = next_obs if not (terminated or truncated) else env.reset()[0]
        if step < 1_000:
            continue
        records = buffer.sample(128)  # [BufferedData(data, index, meta)]
        data = [r.data for r in records]
        o = torch.as_tensor(np.stack([d["obs"] for d in data]))
        o2 = torch.as_tensor(np.stack([d["next_obs"] for d in data]))
        a = torch.tensor([d["action"] for d in data])
        r = torch.tensor([d["reward"] for d in data], dtype=torch.float32)
        done = torch.tensor([d["done"] for d in data], dtype=torch.float32)
        weights = torch.tensor([rec.meta["priority_IS"] for rec in records], dtype=torch.float32).reshape(-1)
        q_all = net(torch.cat([o, o2]))
        q = q_all[:128].gather(1, a[:, None]).squeeze(1)
        with torch.no_grad():  # double DQN, one-step targets
            best = q_all[128:].argmax(1, keepdim=True)
            y = r + gamma * (1 - done) * target(o2).gather(1, best)[:, 0]
        loss = (weights * nn.functional.smooth_l1_loss(q, y, reduction="none")).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        per.update_priorities([rec.index for rec in records], (y - q).detach().abs().tolist())
        if step % 250 == 0:
            target.load_state_dict(net.state_dict())
    print(f"greedy return after {steps:,} steps: {greedy_return(net):.1f} (CartPole-v1, max 500)")
    print(f"records stored: {buffer.count()}, max priority {per.max_priority:.3f}")


if __name__ == "__main__":
    main()
