"""The image every medgo component runs in.

Pinned by tag; the release job rewrites ``RUNTIME_IMAGE`` to ``…@sha256:<digest>`` of the image it
pushed and recompiles the pipeline, so a compiled pipeline always names one immutable image.
The image has ``medgo`` (and so ``kfp``) installed, hence ``install_kfp_package=False``.
"""

import functools

from kfp import dsl

RUNTIME_IMAGE = "ghcr.io/medgo/medgo-runtime:0.1.0"
#: CUDA image (torch with CUDA, flash-attn) for steps that run a model on GPUs in their own pod.
TRAINER_IMAGE = "ghcr.io/medgo/medgo-trainer:0.1.0"

medgo_component = functools.partial(dsl.component, base_image=RUNTIME_IMAGE, install_kfp_package=False)
medgo_gpu_component = functools.partial(dsl.component, base_image=TRAINER_IMAGE, install_kfp_package=False)
