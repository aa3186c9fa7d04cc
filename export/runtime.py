"""Running an exported ONNX policy with numpy and onnxruntime only: no torch.

    from dqnkit.export.runtime import Policy

    policy = Policy.load("policy.onnx")
    action = policy.act(obs)            # one observation -> int; a batch [B, ...] -> [B] int64
    q = policy.q_values(obs)            # one -> [A] float32; a batch -> [B, A]
    policy.metadata.env_id              # the contract the artifact carries

Sessions default to one thread and sequential execution, which is the lowest latency for the
small networks DQN uses (a thread pool's wake-up costs more than the whole forward pass);
pass ``session_options=`` (start from :func:`default_session_options`) or ``providers=`` to
change that.
"""

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from dqnkit.export.contract import ONNX_METADATA_KEY, PolicyMetadata

__all__ = ["Policy", "default_session_options"]

_sum = np.add.reduce
_ONNX_TYPES = {"float32": "tensor(float)", "float64": "tensor(double)", "uint8": "tensor(uint8)"}


def default_session_options() -> ort.SessionOptions:
    """One intra-op and one inter-op thread, sequential execution, all graph optimizations."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class Policy:
    """An exported dqnkit policy in an ONNX Runtime session.

    Use :meth:`load`. Observations are checked before they reach the session: their shape
    (one observation ``obs_shape`` or a batch ``[B, *obs_shape]``), their dtype family (numbers
    that convert to the policy's dtype without loss of meaning: no floats for a uint8 policy,
    no strings or objects) and, for float policies, that every value is finite.
    """

    def __init__(self, session: ort.InferenceSession, metadata: PolicyMetadata) -> None:
        self._session = session
        self.metadata = metadata
        inputs = session.get_inputs()
        outputs = {o.name for o in session.get_outputs()}
        output_names = metadata.raw.get("outputs", ["q_values", "action"])
        if len(inputs) != 1 or not set(output_names) <= outputs or len(output_names) != 2:
            raise ValueError(
                f"the graph's inputs {[i.name for i in inputs]} / outputs {sorted(outputs)} "
                f"are not one observation input and {output_names}"
            )
        expected = _ONNX_TYPES[metadata.obs_dtype]
        if inputs[0].type != expected:
            raise ValueError(
                f"the graph takes {inputs[0].type} but its metadata says {metadata.obs_dtype}"
            )
        declared = inputs[0].shape  # [batch, *obs_shape]; a dimension is an int or a name
        rank_ok = len(declared) == len(metadata.obs_shape) + 1
        if not rank_ok or any(
            isinstance(d, int) and d != want
            for d, want in zip(declared[1:], metadata.obs_shape, strict=False)
        ):
            raise ValueError(
                f"the graph takes {declared} but its metadata says [B, *{metadata.obs_shape}]"
            )
        self._input = inputs[0].name
        self._outputs = list(output_names)
        self._dtype = np.dtype(metadata.obs_dtype)
        self._float = self._dtype.kind == "f"
        self._shape = metadata.obs_shape
        self._single_batch_shape = (1, *metadata.obs_shape)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        session_options: ort.SessionOptions | None = None,
        providers: list[str] | None = None,
    ) -> "Policy":
        """Opens an ``.onnx`` file written by dqnkit's export.

        Args:
          path: the ONNX file.
          session_options: replaces :func:`default_session_options`.
          providers: ONNX Runtime execution providers; CPU when None.

        Raises:
          ValueError: no such file, not an ONNX model, or not a dqnkit policy.
        """
        file = Path(path)
        if not file.is_file():
            raise ValueError(f"{file}: no such ONNX file")
        try:
            session = ort.InferenceSession(
                str(file),
                sess_options=session_options or default_session_options(),
                providers=providers or ["CPUExecutionProvider"],
            )
        except Exception as error:  # onnxruntime raises its own exception types
            raise ValueError(f"{file}: not a loadable ONNX model ({error})") from error
        text = session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
        if text is None:
            raise ValueError(f"{file}: an ONNX model without dqnkit metadata")
        return cls(session, PolicyMetadata.from_json(text))

    @property
    def session(self) -> ort.InferenceSession:
        """The underlying ONNX Runtime session."""
        return self._session

    def act(self, obs: Any) -> Any:
        """The greedy action.

        Args:
          obs: one observation ``obs_shape`` or a batch ``[B, *obs_shape]`` (array-like).

        Returns:
          an ``int`` for one observation, ``[B]`` int64 for a batch.

        Raises:
          ValueError: a bad observation, or Q-values that are not finite.
        """
        batch, single = self._as_batch(obs)
        action = self._run(batch)[1]
        return int(action[0]) if single else action

    def q_values(self, obs: Any) -> np.ndarray:
        """The Q-value of each action.

        Args:
          obs: one observation ``obs_shape`` or a batch ``[B, *obs_shape]`` (array-like).

        Returns:
          ``[n_actions]`` float32 for one observation, ``[B, n_actions]`` for a batch.

        Raises:
          ValueError: a bad observation, or Q-values that are not finite.
        """
        batch, single = self._as_batch(obs)
        q: np.ndarray = self._run(batch)[0]
        return q[0] if single else q

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        # Both outputs, always: an action is only meaningful when every Q-value is finite (a
        # finite input near float32's limit can overflow the network to NaN, whose argmax is 0).
        q, action = self._session.run(self._outputs, {self._input: batch})
        if not math.isfinite(_sum(q, None)) and not np.isfinite(q).all():
            raise ValueError(
                "the policy's Q-values are not finite (NaN or infinity) for this observation"
            )
        return [q, action]

    def _as_batch(self, obs: Any) -> tuple[np.ndarray, bool]:
        # The fast path (an ndarray of the right dtype and shape) costs a few attribute reads,
        # one reshape (a view) and, for floats, one finiteness check.
        array = obs if type(obs) is np.ndarray else np.asarray(obs)
        if array.dtype != self._dtype:
            array = self._convert(array)
        shape = array.shape
        if shape == self._shape:
            array = array.reshape(self._single_batch_shape)
            single = True
        elif shape[1:] == self._shape and len(shape) == len(self._shape) + 1:
            single = False
        else:
            raise ValueError(
                f"observation shape {shape} is neither {self._shape} nor [B, *{self._shape}]"
            )
        # One reduction is the cheapest finiteness check: a NaN or infinity makes the sum
        # non-finite. It accumulates in float64 so that float32 inputs cannot overflow it; a
        # float64 sum that overflows from finite values takes the exact check.
        if (
            self._float
            and not math.isfinite(_sum(array, None, np.float64))
            and not np.isfinite(array).all()
        ):
            raise ValueError("observation has non-finite values (NaN or infinity)")
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        return array, single

    def _convert(self, array: np.ndarray) -> np.ndarray:
        kind = array.dtype.kind
        if self._float:
            if kind not in "fiub":
                raise ValueError(
                    f"observation dtype {array.dtype} is not numeric; the policy takes "
                    f"{self._dtype}"
                )
            return array.astype(self._dtype)
        # An integer policy (uint8 frames): integers within range only, never floats.
        if kind not in "iu":
            raise ValueError(
                f"observation dtype {array.dtype} given to a {self._dtype} policy; pass "
                f"integer frames (floats would be silently truncated)"
            )
        info = np.iinfo(self._dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise ValueError(f"observation values outside the {self._dtype} range")
        return array.astype(self._dtype)
