"""`ivr serve` follows promotions: new calls get the promoted flow bundle, calls in progress
finish on the one they started with.

Each worker polls the flow store (``flows.poll_s``): several workers sharing a database follow
the same promotion without any message between them. Switching trains the new bundle's
classifier in a worker thread, then swaps what ``HandlerFactory.new`` hands out; a handler
already given to a call keeps its own menu and classifier. A version whose files are missing
or broken is logged and not taken: the worker keeps serving the one it has.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from loguru import logger

from intents.flows.bundle import BundleError, load_bundle
from voice.app.flowstore import FlowStore
from voice.app.handlers import HandlerFactory
from voice.app.settings import IvrSettings


class FlowFollower:
    def __init__(self, settings: IvrSettings, factory: HandlerFactory,
                 store: FlowStore | None = None) -> None:
        self.settings = settings
        self.factory = factory
        self.store = store or FlowStore(settings.flows.store_url or settings.server.store_url)
        self._refused: str | None = None  # a digest already found unusable (logged once)

    def check(self) -> bool:
        """Take the active version if it is not the one new calls get; True when switched.
        Blocking (a query, maybe a classifier to train): call it from a thread."""
        active = self.store.active()
        if active is None or active.digest == self.factory.bundle.digest \
                or active.digest == self._refused:
            return False
        try:
            bundle = load_bundle(Path(self.settings.flows.bundles_dir) / active.version)
            if bundle.digest != active.digest:
                raise BundleError(f"{bundle.path}: its content changed since it was promoted "
                                  f"(digest {bundle.digest[:8]}, promoted {active.digest[:8]})")
            self.factory.use(bundle)
        except (BundleError, OSError, ValueError) as error:
            self._refused = active.digest
            logger.error(f"flows: version {active.version} is active but cannot be used "
                         f"({error}); new calls stay on {self.factory.bundle.version}")
            return False
        logger.info(f"flows: new calls now run on {bundle.version} ({bundle.digest[:8]})")
        return True

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await asyncio.sleep(self.settings.flows.poll_s)
            try:
                await asyncio.to_thread(self.check)
            except Exception as error:  # noqa: BLE001 - a lost database must not stop serving
                logger.warning(f"flows: cannot read the active version: {error}")
