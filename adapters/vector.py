"""The actor: several environments stepped together, reset by the loop, rebuilt on resume.

Gymnasium's vector environments reset finished sub-environments behind the caller's back
(NEXT_STEP autoreset returns a fake transition spanning two episodes on the step after a done;
SAME_STEP hides the real final observation in ``infos``), and ``SyncVectorEnv`` spends more time
on that bookkeeping than CartPole spends stepping. DQN needs none of it, so :class:`VectorActor`
holds a plain list of environments: a step returns the real final observation of an episode
that ended, and the actor resets that environment itself, after noting the state of its random
generator so that a resumed run can rebuild it (:class:`EnvSnapshot`).

Seeding follows ``SyncVectorEnv``: environment ``i`` is reset once with ``seed + i``, then with
no seed.
"""

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from dqnkit.adapters.errors import CommandError
from dqnkit.adapters.loop_state import EnvSnapshot

__all__ = ["EpisodeEnd", "Exploration", "Step", "VectorActor"]

Array = np.ndarray[Any, Any]


class EpisodeEnd(NamedTuple):
    """An episode that ended on a step: which environment, its return and its length."""

    env: int
    episode_return: float
    length: int


class Step(NamedTuple):
    """One step of every environment.

    Attributes:
      obs: ``[N, *obs]`` the observations the actions were taken in.
      action: ``[N]`` int64.
      reward: ``[N]`` float64, as the environments returned them.
      next_obs: ``[N, *obs]`` the observations the step ended in: the real final one where an
        episode ended (never a reset observation).
      terminated: ``[N]`` bool: the episode ended in a terminal state (no bootstrapping).
      truncated: ``[N]`` bool: it was cut off (a time limit); bootstrapping continues.
      ended: the episodes that ended on this step, in environment order.
      lost_life: ``[N]`` bool: the env's ``info["lives"]`` fell on this step (Atari); always
        False for envs that report no lives.
    """

    obs: Array
    action: Array
    reward: Array
    next_obs: Array
    terminated: Array
    truncated: Array
    ended: list[EpisodeEnd]
    lost_life: Array


class VectorActor:
    """``num_envs`` environments made by ``make``; :attr:`obs` holds their current observations.

    Args:
      make: builds one environment.
      num_envs: how many.
      env_id: the id, for error messages.
    """

    def __init__(self, make: Callable[[], gym.Env[Any, Any]], num_envs: int, env_id: str) -> None:
        self.env_id = env_id
        self.envs = [self._call("make", make) for _ in range(num_envs)]
        space = self.envs[0].observation_space
        assert isinstance(space, gym.spaces.Box)
        self.observation_space = space
        self.n_actions = int(self.envs[0].action_space.n)
        self.obs: Array = np.zeros((num_envs, *space.shape), dtype=space.dtype)
        # info["lives"] after each env's latest step or reset (None: the env reports none).
        self.lives: list[Any] = [None] * num_envs

    @property
    def num_envs(self) -> int:
        return len(self.envs)

    def start(self, seed: int, snapshots: Sequence[EnvSnapshot]) -> Array:
        """Seeds every environment, then replays each snapshot's episode so far.

        For a fresh run (empty snapshots) this is the first reset; on resume it rebuilds every
        environment exactly where the checkpoint left it. Returns :attr:`obs`.
        """
        for i, (env, snapshot) in enumerate(zip(self.envs, snapshots, strict=True)):
            self.obs[i], info = self._call("reset", env.reset, seed=seed + i)
            if snapshot.rng is not None:
                try:
                    env.unwrapped.np_random.bit_generator.state = snapshot.rng
                except (TypeError, ValueError, KeyError) as error:
                    raise ValueError(
                        f"environment snapshot {i}: bad rng state ({error})"
                    ) from error
                self.obs[i], info = self._call("reset", env.reset)
            for action in snapshot.actions:
                result = self._call("step", env.step, action)
                self.obs[i], info = result[0], result[-1]
            self.lives[i] = _lives(info)
        return self.obs

    def step(self, action: Array, snapshots: list[EnvSnapshot]) -> Step:
        """Steps every environment with ``action``; resets those whose episode ended.

        ``snapshots`` are advanced alongside (the action appended, the reward added; a new one
        begun at each reset), so that a checkpoint taken after this step can rebuild the envs.
        """
        n = len(self.envs)
        if n == 1:
            return self._step_one(int(action[0]), action, snapshots)
        obs, next_obs = self.obs, np.empty_like(self.obs)
        reward = np.empty(n, dtype=np.float64)
        terminated = np.empty(n, dtype=np.bool_)
        truncated = np.empty(n, dtype=np.bool_)
        lost_life = np.empty(n, dtype=np.bool_)
        actions = action.tolist()
        ended: list[EpisodeEnd] = []
        self.obs = np.empty_like(obs)
        for i, env in enumerate(self.envs):
            try:
                o, r, te, tr, info = env.step(actions[i])
            except Exception as error:
                raise self._failed("step", error) from error
            next_obs[i], reward[i], terminated[i], truncated[i] = o, r, te, tr
            lost_life[i] = self._lost_life(i, info)
            snapshot = snapshots[i]
            snapshot.actions.append(actions[i])
            snapshot.episode_return += float(r)
            if te or tr:
                ended.append(EpisodeEnd(i, snapshot.episode_return, len(snapshot.actions)))
                rng = env.unwrapped.np_random.bit_generator.state
                snapshots[i] = EnvSnapshot(rng=rng)
                self.obs[i], info = self._call("reset", env.reset)
                self.lives[i] = _lives(info)
            else:
                self.obs[i] = o
        return Step(obs, action, reward, next_obs, terminated, truncated, ended, lost_life)

    def _step_one(self, a: int, action: Array, snapshots: list[EnvSnapshot]) -> Step:
        """:meth:`step` for a single environment, without the per-environment loop."""
        env, snapshot, obs = self.envs[0], snapshots[0], self.obs
        try:
            o, r, te, tr, info = env.step(a)
        except Exception as error:
            raise self._failed("step", error) from error
        lost = self._lost_life(0, info)
        next_obs = np.array([o], dtype=obs.dtype)  # a copy: the env may reuse its array
        snapshot.actions.append(a)
        snapshot.episode_return += float(r)
        ended = []
        if te or tr:
            ended.append(EpisodeEnd(0, snapshot.episode_return, len(snapshot.actions)))
            snapshots[0] = EnvSnapshot(rng=env.unwrapped.np_random.bit_generator.state)
            reset, info = self._call("reset", env.reset)
            self.obs = np.array([reset], dtype=obs.dtype)
            self.lives[0] = _lives(info)
        else:
            self.obs = next_obs  # never written in place: the replay may still hold it
        reward = np.array([r], dtype=np.float64)
        flags = np.array([te, tr, lost], dtype=np.bool_)
        return Step(obs, action, reward, next_obs, flags[:1], flags[1:2], ended, flags[2:])

    def _lost_life(self, i: int, info: dict[str, Any]) -> bool:
        """Whether env ``i``'s lives fell on the step that returned ``info``; records them."""
        before, self.lives[i] = self.lives[i], _lives(info)
        return before is not None and self.lives[i] is not None and self.lives[i] < before

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def _call(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except CommandError:
            raise
        except Exception as error:
            raise self._failed(what, error) from error

    def _failed(self, what: str, error: Exception) -> CommandError:
        return CommandError(
            f"environment {self.env_id} raised in {what}: {type(error).__name__}: {error}"
        )


def _lives(info: Any) -> int | None:
    """``info["lives"]`` as an int (the ALE's), or None when the env reports no lives."""
    lives = info.get("lives") if isinstance(info, dict) else None
    return int(lives) if isinstance(lives, int | np.integer) else None


class Exploration:
    """Epsilon-greedy actions whose random draws come in blocks, each a function of the seed.

    Act step ``s`` (counted over the run, one per call, all environments together) uses row
    ``s % block`` of block ``s // block``: ``block`` rows of ``num_envs`` uniforms and as many
    random actions, drawn at once from a generator seeded from ``(seed, s // block)`` alone.
    Drawing per block instead of per step removes two generator calls from every step, and
    since a block depends on nothing but its number, a resumed run redraws the block it stopped
    in and continues exactly, with nothing to checkpoint. An environment explores where its
    uniform is below epsilon (taking its random action); the others act greedily, and the
    Q-values are computed only when at least one does.
    """

    def __init__(self, seed: int, num_envs: int, n_actions: int, block: int = 256) -> None:
        self.seed, self.num_envs, self.n_actions, self.block = seed, num_envs, n_actions, block
        self._number = -1
        self._uniforms: Array = np.empty((0, num_envs), dtype=np.float32)
        self._actions: Array = np.empty((0, num_envs), dtype=np.int64)

    def draws(self, step: int) -> tuple[Array, Array]:
        """Act step ``step``'s ``[num_envs]`` uniforms and random actions."""
        number, row = divmod(step, self.block)
        if number != self._number:
            digest = hashlib.blake2b(f"dqnkit-explore:{self.seed}:{number}".encode(), digest_size=8)
            generator = torch.Generator().manual_seed(int.from_bytes(digest.digest(), "little"))
            shape = (self.block, self.num_envs)
            self._uniforms = torch.rand(shape, generator=generator).numpy()
            self._actions = torch.randint(0, self.n_actions, shape, generator=generator).numpy()
            self._number = number
        return self._uniforms[row], self._actions[row]

    def actions(self, step: int, epsilon: float, q_values: Callable[[], torch.Tensor]) -> Array:
        """``[num_envs]`` int64 actions for act step ``step``."""
        uniforms, random_actions = self.draws(step)
        if self.num_envs == 1:  # the common case, without array operations
            if uniforms[0] < np.float32(epsilon):
                return random_actions
            return q_values().argmax(dim=1).cpu().numpy()
        explore = uniforms < np.float32(epsilon)
        if explore.all():
            return random_actions
        greedy = q_values().argmax(dim=1).cpu().numpy()
        return np.where(explore, random_actions, greedy)
