"""The image every medgo component runs in.

Pinned by tag; the release job rewrites ``RUNTIME_IMAGE`` to ``…@sha256:<digest>`` of the image it
pushed and recompiles the pipeline, so a compiled pipeline always names one immutable image.
The image has ``medgo`` (and so ``kfp``) installed, hence ``install_kfp_package=False``.
"""

import functools

from kfp import dsl

from medgo.k8s.names import RUNTIME_IMAGE, TRAINER_IMAGE

# TRAINER_IMAGE (torch with CUDA, flash-attn) also runs the steps that put a model on GPUs in their own pod.

medgo_component = functools.partial(dsl.component, base_image=RUNTIME_IMAGE, install_kfp_package=False)
medgo_gpu_component = functools.partial(dsl.component, base_image=TRAINER_IMAGE, install_kfp_package=False)
