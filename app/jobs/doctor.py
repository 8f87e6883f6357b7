"""``triage doctor``: what is installed, what GPU there is, and whether serving and QLoRA training fit it.

Three memory plans (``models.memory_plan``): the configured deployment (the ``TRIAGE_*`` settings and the
checkpoints they name), and the production pair this product is built for (microsoft/mdeberta-v3-base +
openai/gpt-oss-20b, from the configs shipped in ``models/configs``) served and QLoRA-trained with the defaults.
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.server.llm_tier import serving_shape
from app.server.settings import Settings
from models.errors import ModelError

PACKAGES = {
    "torch": "required",
    "transformers": "required",
    "peft": "required",
    "bitsandbytes": "NF4 experts and QLoRA",
    "accelerate": "streaming 4-bit loader",
    "kernels": "native MXFP4 on CUDA: pip install 'triage[mxfp4]'",
    "triton": "native MXFP4 on CUDA: pip install 'triage[mxfp4]'",
    "vllm": "optional: the remote LLM tier runs as its own server (see README)",
}
PRODUCTION_ENCODER = "microsoft/mdeberta-v3-base"
PRODUCTION_LLM = "openai/gpt-oss-20b"
REFERENCE_GPU = "rtx4090"


@dataclass
class DoctorReport:
    packages: dict[str, str | None]
    cuda: str
    gpu: str
    plans: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(plan.fits for plan in self.plans.values())


def installed_packages() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def diagnose(settings: Settings, gpu_name: str | None = None) -> DoctorReport:
    """Build every plan for ``settings`` on the named GPU, else the detected one, else the reference RTX 4090."""
    import torch

    from models.memory_plan import detected_gpu, load_config, named_gpu, plan_serving, serving_plan
    from models.train_adapter import AdapterTrainingArgs, training_plan_for

    detected = detected_gpu()
    cuda = f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)" if detected else "no CUDA GPU visible"
    if gpu_name:
        gpu, source = named_gpu(gpu_name), f"--gpu {gpu_name}"
    elif detected is not None:
        gpu, source = detected, "detected"
    else:
        gpu, source = named_gpu(REFERENCE_GPU), f"no GPU here: planning for the reference {REFERENCE_GPU}"
    report = DoctorReport(installed_packages(), cuda, f"{gpu.name} ({source})")
    shape = serving_shape(settings)
    encoder_path = settings.encoder_path
    adapter = settings.adapter_path(encoder_path) if settings.llm_backend == "local" else None
    if adapter is not None and not adapter.exists():
        report.problems.append(f"configured serving: no adapter at {adapter}: escalations will fail (503)")
        adapter = None
    try:
        report.plans["configured serving"] = plan_serving(
            encoder_path, adapter, gpu, shape, settings.llm_quantization, settings.llm_base_model
        )
    except (ModelError, OSError) as exc:
        report.problems.append(f"configured serving: cannot plan: {exc}")
    llm = load_config(PRODUCTION_LLM)
    report.plans["production serving"] = serving_plan(
        load_config(PRODUCTION_ENCODER), llm, gpu, shape, settings.llm_quantization
    )
    args = AdapterTrainingArgs.for_base_model(PRODUCTION_LLM)
    report.plans["production QLoRA training"] = training_plan_for(args, gpu)  # the trainer's own check
    return report


def render(report: DoctorReport) -> str:
    lines = ["packages:"]
    for name, version in report.packages.items():
        lines.append(f"  {name:<13} {version or 'missing':<14} {PACKAGES[name] if not version else ''}".rstrip())
    lines += [f"cuda: {report.cuda}", f"gpu: {report.gpu}", ""]
    for title, plan in report.plans.items():
        plan_text = plan.render().splitlines()
        lines += [f"== {title} ==", *plan_text, ""]
    lines += [f"problem: {p}" for p in report.problems]
    fits = all(plan.fits for plan in report.plans.values())
    lines.append(f"verdict: {'every plan fits' if fits else 'NOT every plan fits'}, {len(report.problems)} problem(s)")
    return "\n".join(lines)


def as_json(report: DoctorReport) -> dict[str, Any]:
    return {
        "packages": report.packages,
        "cuda": report.cuda,
        "gpu": report.gpu,
        "plans": {title: plan.as_dict() for title, plan in report.plans.items()},
        "problems": report.problems,
        "ok": report.ok,
    }


def write_json(report: DoctorReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(as_json(report), indent=2) + "\n")
