"""The names medgo's cluster objects go by, in one place.

``kubectl apply -k manifests/overlays/<site>`` creates these objects; the pipeline, the PyTorchJob
launcher, the InferenceService deployer and the tests refer to them through this module, and
``tests/k8s/test_names.py`` checks that ``manifests/`` defines each one, so a rename cannot drift.
"""

from __future__ import annotations

from typing import Literal

from medgo import __version__

#: Namespace of every medgo object (the KFP profile runs the pipeline there too).
NAMESPACE = "medgo"

#: Shared ReadWriteMany volume with the data, mounted at the same path in pipeline steps and training pods.
DATA_PVC = "medgo-data"
DATA_MOUNT = "/mnt/medgo-data"
#: Shared ReadWriteMany volume for training checkpoints (a restarted pod on another node resumes from it).
CHECKPOINT_PVC = "medgo-checkpoints"
CHECKPOINT_MOUNT = "/mnt/medgo-checkpoints"

#: Secret with the object store's credentials (created by the site's operator, never committed) and the
#: keys medgo reads from it, exposed under the same names as environment variables.
S3_SECRET = "medgo-s3"
S3_SECRET_KEYS: tuple[str, ...] = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")

#: Identities: KFP component pods (the only medgo identity that talks to the API server), training pods,
#: InferenceService predictors.
PIPELINE_SERVICE_ACCOUNT = "medgo-pipeline"
TRAINER_SERVICE_ACCOUNT = "medgo-trainer"
SERVING_SERVICE_ACCOUNT = "medgo-serving"
#: The Role (and RoleBinding) that grants the pipeline exactly the calls it makes.
PIPELINE_ROLE = "medgo-pipeline"

#: Serving outranks training (doctors are waiting); training queues instead of preempting.
TRAINING_PRIORITY_CLASS = "medgo-training"
SERVING_PRIORITY_CLASS = "medgo-serving"

#: GPU node pools: the NVIDIA GPU operator's product label, the GPU resource, and the taint GPU nodes carry.
GPU_NODE_LABEL = "nvidia.com/gpu.product"
DEFAULT_GPU_PRODUCT = "NVIDIA-A100-SXM4-80GB"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}

#: Runtimes an InferenceService can use: medgo's own CPU ServingRuntime, or KServe's Hugging Face runtime
#: with vLLM on GPUs.
ServingRuntime = Literal["medgo-cpu", "huggingface-vllm"]

#: The InferenceService doctors call, medgo's CPU ServingRuntime and its model format.
INFERENCE_SERVICE = "medgo"
CPU_SERVING_RUNTIME = "medgo-cpu"
CPU_MODEL_FORMAT = "medgo"
#: The doctor feedback store's single writer (see medgo.feedback.store): Deployment and Service, its
#: ReadWriteOnce volume, and the Secret of bearer tokens (keys read, write, record, export).
FEEDBACK_SERVICE = "medgo-feedback"
FEEDBACK_SERVICE_URL = f"http://{FEEDBACK_SERVICE}.{NAMESPACE}.svc.cluster.local"
FEEDBACK_PVC = "medgo-feedback"
FEEDBACK_MOUNT = "/mnt/medgo-feedback"
FEEDBACK_TOKENS_SECRET = "medgo-feedback-tokens"
FEEDBACK_TOKENS_MOUNT = "/etc/medgo/feedback-tokens"
#: Namespace whose Prometheus scrapes the predictors' and the feedback service's metrics.
MONITORING_NAMESPACE = "monitoring"
#: KFP's per-namespace launcher settings (pipeline root on the medgo S3 store).
KFP_LAUNCHER_CONFIGMAP = "kfp-launcher"

#: Images, pinned by the release's version tag (the release job adds digests; see manifests/README.md).
IMAGE_REGISTRY = "ghcr.io/medgo"
RUNTIME_IMAGE = f"{IMAGE_REGISTRY}/medgo-runtime:{__version__}"
TRAINER_IMAGE = f"{IMAGE_REGISTRY}/medgo-trainer:{__version__}"
SERVING_IMAGE = f"{IMAGE_REGISTRY}/medgo-serving:{__version__}"

#: Labels every medgo object carries, so ``kubectl get -l app.kubernetes.io/part-of=medgo`` finds them.
PART_OF_LABELS = {"app.kubernetes.io/part-of": "medgo", "app.kubernetes.io/managed-by": "medgo"}
