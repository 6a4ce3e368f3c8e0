"""Names of the Trainer's numeric precision choices (TF-free, for the CLI and the pipeline).

* ``auto`` (default): mixed precision where the hardware computes it natively:
  ``mixed_float16`` on a GPU, ``mixed_bfloat16`` on a CPU with bfloat16
  instructions (AVX512-BF16 or AMX), float32 on any other CPU.
* ``float32``: float32 everywhere, e.g. to rule precision out while debugging.

Whatever trained, the exported SavedModel computes in float32
(trainer_module.run_fn), so a serving machine needs no bfloat16 or float16 support.
"""

AUTO = "auto"
FLOAT32 = "float32"
PRECISIONS = (AUTO, FLOAT32)


def check_precision(name: str) -> str:
    """``name`` if it is one of ``PRECISIONS``; otherwise a ValueError that lists them."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
    return name
