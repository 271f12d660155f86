"""A flow bundle: everything that decides what the IVR says and where it sends a caller, as one
versioned unit.

A bundle is a folder named for its version::

    <bundles_dir>/<version>/
        bundle.yaml          version, note, who made it and when, model choices
        menu.yaml            intents, examples, DTMF digits, routes, thresholds
        turn_manager.yaml    the LLM's instructions (prompt)
        tools.json           the tool schema the LLM is offered

The menu carries the thresholds (``high_confidence``, ``low_confidence``, per-intent
``threshold``); ``bundle.yaml`` names the models the bundle was made and evaluated with. The
*working* bundle is the one the files of this checkout make (the configured menu, the shipped
prompts, the configured models); its version is the menu's version plus a digest of the content,
so any edit is a new version.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from intents.config import MenuConfig, load_menu

PROMPTS = Path(__file__).resolve().parents[1] / "dialogue" / "prompts"
SHIPPED_PROMPT = PROMPTS / "turn_manager-v1.yaml"
SHIPPED_TOOLS = PROMPTS / "tools-v1.json"
WORKING = "working"  # the pseudo-version of this checkout's own files
FILES = ("bundle.yaml", "menu.yaml", "turn_manager.yaml", "tools.json")


class BundleError(ValueError):
    """A bundle that cannot be read or written; the message names the file."""


@dataclass
class FlowBundle:
    """One version of the flow. ``path`` is None for the working bundle."""

    version: str
    menu: MenuConfig
    prompt: dict[str, Any]
    tools: list[dict[str, Any]]
    models: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    created_at: str = ""
    created_by: str = ""
    path: Path | None = None

    @property
    def digest(self) -> str:
        """sha256 of the content (not of who made it, or when): equal digests behave alike."""
        # A menu without its own speech hints or rejection score digests as it did before the
        # fields existed, so the eval runs stored for it still count as its evidence.
        unset = {name for name in ("speech_hints", "rejection_score")
                 if getattr(self.menu, name) is None} or None
        content = {"menu": self.menu.model_dump(mode="json", exclude=unset), "prompt": self.prompt,
                   "tools": self.tools, "models": self.models}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    @property
    def prompt_file(self) -> Path:
        """The turn manager's prompt file of this bundle (the LLM agent reads it)."""
        return self.path / "turn_manager.yaml" if self.path else SHIPPED_PROMPT


def working_bundle(menu_path: Path | str | None = None,
                   models: dict[str, Any] | None = None) -> FlowBundle:
    """The bundle this checkout's files make: ``menu_path`` (or the shipped menu), the shipped
    prompt and tool schema, and ``models`` (the model choices in force)."""
    try:
        menu = load_menu(menu_path)
    except (OSError, ValueError) as error:
        raise BundleError(f"{menu_path or 'the shipped menu'}: {error}") from error
    bundle = FlowBundle(version="", menu=menu, prompt=yaml.safe_load(SHIPPED_PROMPT.read_text()),
                        tools=json.loads(SHIPPED_TOOLS.read_text()), models=dict(models or {}),
                        note="the files of this checkout")
    bundle.version = f"{menu.version}+{bundle.digest[:8]}"
    return bundle


def load_bundle(folder: Path | str) -> FlowBundle:
    """The bundle stored in ``folder``; a missing or invalid file is named in the error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"{folder}: no such bundle folder (its files are gone)")
    for name in FILES:
        if not (folder / name).is_file():
            raise BundleError(f"{folder / name}: missing (the bundle is incomplete)")
    try:
        meta = yaml.safe_load((folder / "bundle.yaml").read_text()) or {}
        menu = load_menu(folder / "menu.yaml")
        prompt = yaml.safe_load((folder / "turn_manager.yaml").read_text())
        tools = json.loads((folder / "tools.json").read_text())
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise BundleError(f"{folder}: {error}") from error
    if not isinstance(meta, dict) or meta.get("version") != folder.name:
        raise BundleError(f"{folder / 'bundle.yaml'}: 'version' must be the folder's name "
                          f"({folder.name!r})")
    return FlowBundle(version=folder.name, menu=menu, prompt=prompt, tools=tools,
                      models=dict(meta.get("models") or {}), note=str(meta.get("note") or ""),
                      created_at=str(meta.get("created_at") or ""),
                      created_by=str(meta.get("created_by") or ""), path=folder)


def save_bundle(bundle: FlowBundle, root: Path | str, version: str, note: str = "") -> FlowBundle:
    """Write ``bundle`` as version ``version`` under ``root``; an existing version is never
    overwritten (a version names one content for good)."""
    if not version or "/" in version or version.startswith(".") or version == WORKING:
        raise BundleError(f"{version!r} cannot name a bundle")
    folder = Path(root) / version
    if folder.exists():
        raise BundleError(f"{folder}: version {version} exists already; pick a new version")
    tmp = Path(root) / f".{version}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    menu = bundle.menu.model_dump(mode="json", exclude_defaults=True)
    menu["version"] = bundle.menu.version
    meta = {"version": version, "note": note or bundle.note, "made_from": bundle.version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "created_by": _who(), "models": bundle.models}
    (tmp / "bundle.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    (tmp / "menu.yaml").write_text(yaml.safe_dump(menu, sort_keys=False, allow_unicode=True))
    (tmp / "turn_manager.yaml").write_text(yaml.safe_dump(bundle.prompt, sort_keys=False))
    (tmp / "tools.json").write_text(json.dumps(bundle.tools, indent=1) + "\n")
    tmp.rename(folder)
    return load_bundle(folder)


def list_bundles(root: Path | str) -> list[str]:
    """Versions stored under ``root`` (folders with a bundle.yaml), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
               and (p / "bundle.yaml").is_file()]
    return [p.name for p in sorted(folders, key=lambda p: (p.stat().st_mtime, p.name))]


def resolve_bundle(name: str | None, root: Path | str, working: FlowBundle) -> FlowBundle:
    """``working`` (or None), the working bundle's own version, or a stored version."""
    if name in (None, WORKING, working.version):
        return working
    return load_bundle(Path(root) / name)


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"
