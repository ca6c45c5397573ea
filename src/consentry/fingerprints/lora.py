"""Read a LoRA's modules (down/up factors, alpha) from any key format, in canonical names.

Why per-format parsing here rather than diffusers' converters: those need torch and raise on
unknown keys; consentry reads files from strangers and must name exactly what it refused.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from consentry.fingerprints.errors import FingerprintError
from consentry.formats.tensors import Manifest, TensorInfo

# (regex on the tensor name, role); group 1 is the raw module path.
_ROLES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), role)
    for pattern, role in (
        (r"^(.*)\.lora_down\.weight$", "down"),
        (r"^(.*)\.lora_up\.weight$", "up"),
        (r"^(.*)\.lora_A(?:\.[^.]+)?\.weight$", "down"),  # PEFT, with or without the adapter name
        (r"^(.*)\.lora_B(?:\.[^.]+)?\.weight$", "up"),
        (r"^(.*)\.lora_linear_layer\.down\.weight$", "down"),
        (r"^(.*)\.lora_linear_layer\.up\.weight$", "up"),
        (r"^(.*)\.lora\.down\.weight$", "down"),  # diffusers LoRACompatible layers
        (r"^(.*)\.lora\.up\.weight$", "up"),
        (r"^(.*)_lora\.down\.weight$", "down"),  # old diffusers attention processors: to_q_lora.down
        (r"^(.*)_lora\.up\.weight$", "up"),
        (r"^(.*)\.alpha$", "alpha"),
    )
)
# Recognised, refused with a clear reason (they are not B·A).
UNSUPPORTED = {
    "hada_w1_a": "LyCORIS LoHa", "hada_w1_b": "LyCORIS LoHa", "lokr_w1": "LyCORIS LoKr", "lokr_w2": "LyCORIS LoKr",
    "lokr_w1_a": "LyCORIS LoKr", "dora_scale": "DoRA", "lora_magnitude_vector": "DoRA", "oft_blocks": "OFT",
    "oft_diag": "OFT", "lora_mid": "LoCon with Tucker decomposition (lora_mid)", ".diff": "LyCORIS full-weight diff",
}  # fmt: skip
MAX_RANK = 4096  # beyond this a "LoRA" is not low-rank; a sign of a broken or hostile file


@dataclass
class LoraModule:
    raw: str
    down: TensorInfo | None = None
    up: TensorInfo | None = None
    alpha: TensorInfo | None = None
    scale: float | None = None  # alpha / rank once known


@dataclass
class LoraLayout:
    key_format: str
    modules: dict[str, LoraModule]
    notes: list[str] = field(default_factory=list)


def unsupported_variant(names: list[str]) -> str | None:
    """The LyCORIS/DoRA/OFT variant a file uses, if any."""
    for name in names:
        for part in name.split("."):
            if part in UNSUPPORTED:
                return UNSUPPORTED[part]
        if name.endswith((".diff", ".diff_b")):
            return UNSUPPORTED[".diff"]
    return None


def find_lora(manifest: Manifest) -> LoraLayout | None:
    """Group the LoRA tensors by module, or ``None`` if this is not a (B·A) LoRA.

    Raises FingerprintError for recognised but unsupported variants (LoHa, LoKr, DoRA, OFT)."""
    names = [t.name for t in manifest.tensors]
    variant = unsupported_variant(names)
    if variant:
        raise FingerprintError(f"{variant} recognised: not yet fingerprinted (only LoRA/LoCon B·A deltas are)")
    modules: dict[str, LoraModule] = {}
    formats: set[str] = set()
    stray = 0
    for t in manifest.tensors:
        for pattern, role in _ROLES:
            m = pattern.match(t.name)
            if m:
                module = modules.setdefault(m.group(1), LoraModule(raw=m.group(1)))
                setattr(module, role, t)
                if role != "alpha":
                    formats.add(_format_of(t.name))
                break
        else:
            stray += 1
    modules = {k: v for k, v in modules.items() if v.down is not None or v.up is not None}
    if not modules:
        return None
    layout = LoraLayout(key_format="+".join(sorted(formats)), modules=modules)
    if stray:
        layout.notes.append(f"{stray} tensors that are not LoRA factors were ignored")
    _apply_alpha(layout, manifest)
    return layout


def _format_of(name: str) -> str:
    if ".lora_down." in name or ".lora_up." in name:
        return "kohya"
    if ".lora_A" in name or ".lora_B" in name:
        return "peft"
    return "diffusers"


def _apply_alpha(layout: LoraLayout, manifest: Manifest) -> None:
    """Per-module scale alpha/rank: kohya stores ``.alpha`` tensors; PEFT/diffusers keep
    ``lora_alpha`` in diffusers' ``lora_adapter_metadata`` header or a PEFT adapter_config.json."""
    config = _peft_config(manifest)
    assumed = 0
    for module in layout.modules.values():
        if module.alpha is not None:
            continue  # read with the factors (it is a tensor)
        found = _config_alpha(config, module.raw)
        if found is None:
            assumed += 1
        else:
            module.scale = found  # alpha (or alpha with rsLoRA marker) resolved against rank later
    if assumed and layout.key_format != "kohya":
        layout.notes.append(f"{assumed} modules carry no alpha: assumed alpha = rank (scores do not depend on it; the coefficient does)")


def _peft_config(manifest: Manifest) -> dict:
    config: dict = {}
    raw = manifest.metadata.get("lora_adapter_metadata")
    if raw:
        try:
            config = json.loads(raw)
        except ValueError:
            config = {}
    sidecar = Path(manifest.path).with_name("adapter_config.json") if not Path(manifest.path).is_dir() else Path(manifest.path) / "adapter_config.json"
    if not config and sidecar.is_file() and sidecar.stat().st_size < 1 << 20:
        try:
            config = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
    return config if isinstance(config, dict) else {}


def _config_alpha(config: dict, raw_module: str) -> float | None:
    """``lora_alpha`` for a module (``alpha_pattern`` first), optionally under a component prefix
    (diffusers writes ``unet.lora_alpha``). Returned negative when rsLoRA (alpha/√r) applies."""
    if not config:
        return None
    component = raw_module.split(".", 1)[0]
    for prefix in (component + ".", ""):
        alpha = config.get(prefix + "lora_alpha")
        if alpha is None:
            continue
        patterns = config.get(prefix + "alpha_pattern") or {}
        for key, value in patterns.items():  # PEFT matches alpha_pattern keys as regexes on the module path
            try:
                hit = re.search(rf"(^|\.){key}$", raw_module)
            except re.error:
                hit = re.search(rf"(^|\.){re.escape(key)}$", raw_module)
            if hit:
                alpha = value
                break
        rslora = bool(config.get(prefix + "use_rslora"))
        try:
            value = float(alpha)
        except (TypeError, ValueError):
            return None
        return -value if rslora else value
    return None


def module_scale(module: LoraModule, rank: int, alpha_value: float | None) -> float:
    """alpha/rank (kohya, PEFT), alpha/√rank (rsLoRA), 1 when no alpha is known.

    An ``.alpha`` tensor of 0 means alpha = rank (scale 1): kohya sd-scripts' ``networks/lora.py``
    sets ``alpha = self.lora_dim if alpha is None or alpha == 0``, so such files apply at full
    strength. (A PEFT ``lora_alpha`` of 0 really is scale 0 in PEFT and stays so.)"""
    if alpha_value is not None:
        return 1.0 if alpha_value == 0 else alpha_value / rank
    if module.scale is not None:
        return (-module.scale / math.sqrt(rank)) if module.scale < 0 else module.scale / rank
    return 1.0
