"""What `serve` does at start, decided from the settings and a few facts about the machine alone.

Pure: no file, library or network is read here (facts.py gathers what the plan needs), so every
rule below is unit-tested without a model: which GGUF to load (the original or its optimised copy),
whether the first start makes that copy, what decodes a request running alone, and how to listen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.core import tls
from appliance.core.errors import ConfigError

if TYPE_CHECKING:
    from appliance.core.settings import Settings
    from appliance.models.report import Report


@dataclass(frozen=True)
class ModelFacts:
    """What the plan reads of this machine and data dir (facts.gather)."""

    model_path: str  # the file asked for: --model, else the embedded model
    embedded_path: str | None  # the embedded model's GGUF; None where its package is absent
    gpu_offload: bool  # this llama.cpp build offloads layers to a GPU
    measured_here: bool  # the model file, as it is now, has a report made on this CPU (kept a copy or not)
    copy: Report | None  # the report of a kept copy that is still valid (models.select.optimized_copy)


@dataclass(frozen=True)
class StartupPlan:
    model_path: str  # the file asked for
    optimize_first: bool  # make the optimised copy before loading (then gather and plan again)
    served_path: str  # the file the engine loads: the copy, or model_path itself
    copy: Report | None  # the copy's report where served_path is the copy
    solo_path: str | None  # the file a request running alone decodes on, or None
    notes: tuple[str, ...] = field(default=())  # why, for serve's log
    served_because: str = ""  # why served_path is the file served, in a few words (the hive status)


def model_path(settings: Settings, embedded_path: str | None, embedded_missing: str = "") -> str:
    """The file asked for: --model, else the embedded model; a ConfigError naming the fix where neither is."""
    if settings.model_path:
        return settings.model_path
    if embedded_path is None:
        raise ConfigError(embedded_missing or "the embedded model is not installed; pass --model PATH to a GGUF file")
    return embedded_path


def runs_on_gpu(settings: Settings, gpu_offload: bool) -> bool:
    return settings.gpu == "auto" and gpu_offload


def optimize_first(settings: Settings, facts: ModelFacts) -> bool:
    """Whether serve makes the optimised copy before loading: the embedded model, on the CPU, with
    --optimized-model auto, and no report yet on this file from this CPU (kept or not, so a copy the
    gate rejected is not measured again at every start). A model the operator brought is optimised
    only when asked (`alveare model optimize`): on a large model that takes long."""
    if settings.optimized_model != "auto" or facts.embedded_path is None:
        return False
    if Path(facts.model_path).resolve() != Path(facts.embedded_path).resolve():
        return False
    return not runs_on_gpu(settings, facts.gpu_offload) and not facts.measured_here


def copy_unused_because(settings: Settings, gpu_offload: bool) -> str | None:
    """Why serve, with these settings, loads the original even where a valid optimised copy exists
    (which `model show` reports too), or None."""
    if settings.optimized_model == "off":
        return "--optimized-model off"
    if runs_on_gpu(settings, gpu_offload):
        # The copy won on this CPU's kernels; on a GPU every layer runs elsewhere, where it was never measured.
        return "every layer runs on the GPU (--gpu off serves it on the CPU)"
    return None


def solo_model(settings: Settings, model_path: str, copy: Report | None) -> tuple[str | None, str | None]:
    """The file a request running alone decodes on (--solo-model), or None, and the log line saying
    why; `copy`: the report of the copy serve loads for `model_path`, None where it loads the original."""
    # Here, not at the top: the user CLI (in the SDK wheel) reads plan_listen and has no numpy.
    from appliance.engine.tuning.solo_lane import SOLO_BELOW

    if settings.solo_model == "off":
        return None, None
    if settings.solo_model != "auto":
        return settings.solo_model, None  # beside whichever file is served
    if copy is None:
        return None, None  # no copy served: the original decodes every step already
    kept = next((c for c in copy.candidates if c.type == copy.kept), None)
    one_row = kept.ratios.get("decode_one") if kept else None
    if one_row is None or one_row >= SOLO_BELOW:
        return None, None
    return model_path, (
        f"a request running alone decodes on {model_path}: the copy's one-row step measured {one_row:.2f}x "
        "the original's here (--solo-model off: the copy serves every step)"
    )


def plan_startup(settings: Settings, facts: ModelFacts) -> StartupPlan:
    """The start `serve` makes with these settings on this machine (see the module's docstring)."""
    notes: list[str] = []
    copy = None if settings.optimized_model == "off" else facts.copy
    because = "--optimized-model off" if settings.optimized_model == "off" else ""
    if copy is not None and copy.copy_path is not None:
        unused = copy_unused_because(settings, facts.gpu_offload)
        if unused is not None:
            notes.append(f"serving {facts.model_path}, not its optimised copy: {unused}")
            copy, because = None, unused
        else:
            because = copy.verdict
            why = copy.verdict.removeprefix(f"kept the {copy.kept} copy: ")
            notes.append(
                f"serving the optimised {copy.kept} copy {copy.copy_path} of {facts.model_path} ({why}); "
                "--optimized-model off serves the original"
            )
    else:
        copy = None
    solo_path, why = solo_model(settings, facts.model_path, copy)
    if why:
        notes.append(why)
    return StartupPlan(
        model_path=facts.model_path,
        optimize_first=optimize_first(settings, facts),
        served_path=copy.copy_path if copy is not None and copy.copy_path else facts.model_path,
        copy=copy,
        solo_path=solo_path,
        notes=tuple(notes),
        served_because=because or "no optimised copy kept for this file on this CPU",
    )


@dataclass(frozen=True)
class ListenPlan:
    """How `serve` listens: HTTPS with this certificate and key, or plain HTTP (cert None)."""

    cert: Path | None
    key: Path | None
    base_url: str  # the server's root URL as a client on the network would write it
    insecure: bool  # plain HTTP beyond loopback, asked for with --insecure-http


def own_cert_paths(settings: Settings) -> tuple[Path, Path]:
    """The certificate and key HTTPS uses: the admin's (--tls-cert/--tls-key), else the data dir's own."""
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigError(
            "--tls-cert and --tls-key (ALVEARE_TLS_CERT, ALVEARE_TLS_KEY) go together: give both or neither"
        )
    if settings.tls_cert and settings.tls_key:
        return Path(settings.tls_cert).expanduser(), Path(settings.tls_key).expanduser()
    return settings.data_path / tls.CERT_FILE, settings.data_path / tls.KEY_FILE


def plan_listen(settings: Settings, hostname: str) -> ListenPlan:
    """HTTPS whenever the server listens beyond loopback (or the admin supplied a certificate);
    plain HTTP on loopback, or anywhere with --insecure-http. `hostname`: this machine's name, which
    a wildcard address is written as (the certificate covers it)."""
    loopback = tls.is_loopback(settings.host)
    https = settings.tls_cert is not None or not (loopback or settings.insecure_http)
    cert, key = own_cert_paths(settings) if https else (None, None)
    host = hostname if settings.host in ("0.0.0.0", "::", "") else settings.host
    host = f"[{host}]" if ":" in host else host
    url = f"{'https' if https else 'http'}://{host}:{settings.port}"
    return ListenPlan(cert, key, url, insecure=not https and not loopback)
