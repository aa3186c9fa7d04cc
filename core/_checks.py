"""Shape and dtype checks shared by the core functions (the contract comes first)."""

import torch


def check_rank(name: str, x: torch.Tensor, rank: int) -> None:
    if x.dim() != rank:
        raise ValueError(f"{name} must have rank {rank}, got shape {tuple(x.shape)}")


def check_floating(name: str, x: torch.Tensor) -> None:
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")


def check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_positive_int(name: str, value: object) -> int:
    """Checks that ``value`` is a positive ``int`` (not a bool) and returns it."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_unit_interval(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def check_batch(
    kind: str, batch: tuple[object, ...], fields: tuple[str, ...], stored: list[torch.Tensor]
) -> int:
    """Checks each field of a batch (``kind.name``) against the storage tensor that will hold it
    (same trailing shape, a dtype it can take without loss) and returns their common count."""
    count: int | None = None
    for name, new, into in zip(fields, batch, stored, strict=True):
        if not isinstance(new, torch.Tensor):
            raise ValueError(f"{kind}.{name} must be a tensor, got {type(new).__name__}")
        if new.dim() == 0 or new.shape[1:] != into.shape[1:]:
            raise ValueError(
                f"{kind}.{name} has shape {tuple(new.shape)}, expected [N, "
                f"*{tuple(into.shape[1:])}] to match the storage's {tuple(into.shape)}"
            )
        if not torch.can_cast(new.dtype, into.dtype):
            raise ValueError(
                f"{kind}.{name} has dtype {new.dtype}, which cannot be stored in the "
                f"storage's {into.dtype} without loss"
            )
        if count is None:
            count = int(new.shape[0])
        elif new.shape[0] != count:
            raise ValueError(
                f"{kind}.{name} has {new.shape[0]} rows but {kind}.{fields[0]} has {count}; "
                "every field needs the same leading dimension"
            )
    assert count is not None  # every batch type has fields
    return count
