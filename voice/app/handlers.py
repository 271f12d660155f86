"""Turn handlers for calls: what is shared by every call of the process, and what each call owns.

The intent classifier is trained once from the menu and the embedded LLM server is started once;
each call gets its own handler (its own conversation state) over them.

The menu comes from a flow bundle (``intents.flows``): the working one (this checkout's files)
unless another is given. ``use`` switches to another bundle for new calls only: a call in
progress keeps the handler, menu and classifier it started with.
"""

from __future__ import annotations

from intents.dialogue.simple import EchoTurnHandler, LlmTurnHandler
from intents.dialogue.turns import TurnHandler
from intents.flows.bundle import FlowBundle, working_bundle
from voice.app.settings import IvrSettings


class HandlerFactory:
    """Makes one ``TurnHandler`` per call of the configured kind (echo, llm, manager)."""

    def __init__(self, settings: IvrSettings, bundle: FlowBundle | None = None) -> None:
        self.settings = settings
        self.bundle = bundle or working_bundle(settings.call.menu, model_choices(settings))
        self.kind = settings.call.handler
        self._server = None
        self._llm_url = settings.models.llm_url
        self._manager_parts = None
        if self.kind == "manager":
            self._manager_parts = self._build_manager_parts(self.bundle)
        elif self.kind == "llm" and self._llm_url is None:
            from models.llm_server import EmbeddedLlmServer
            from models.registry import shared_registry

            gguf = shared_registry(settings.models).llm_gguf_path()
            self._server = EmbeddedLlmServer(gguf, port=settings.models.llm_port,
                                             kind=settings.models.llm_server)
            self._llm_url = self._server.start()

    def use(self, bundle: FlowBundle) -> None:
        """New calls run on ``bundle`` (its classifier trained here: call from a thread)."""
        if self.kind == "manager":
            crm = self._manager_parts["crm"] if self._manager_parts else None
            self._manager_parts = self._build_manager_parts(bundle, crm)
        self.bundle = bundle

    def _build_manager_parts(self, bundle: FlowBundle, crm=None) -> dict:
        from handoff.crm import CrmStore
        from intents.classifier import IntentClassifier
        from intents.llm_fallback import LlmFallback
        from voice.inference.client import embedder_for

        settings = self.settings
        if (settings.call.llm_phrasing or settings.call.llm_answers) \
                and not settings.models.llm_url:
            raise SystemExit("call.llm_phrasing and call.llm_answers need models.llm_url "
                             "(an OpenAI-compatible URL)")
        menu = bundle.menu
        embedder = embedder_for(settings)
        classifier = IntentClassifier(embedder, **menu.classifier_options()).fit(
            *menu.training_data())
        # One client for every call, and a menu that asks for it without an LLM URL fails here,
        # at start-up, rather than on the first call.
        fallback = LlmFallback.from_menu(menu, self._llm_url)
        return {"menu": menu, "classifier": classifier,
                "crm": crm or CrmStore(settings.call.crm_url), "embedder": embedder,
                "fallback": fallback, "version": bundle.version,
                "prompt_file": bundle.prompt_file}

    def new(self) -> TurnHandler:
        settings = self.settings
        if self.kind == "echo":
            return EchoTurnHandler(settings.call.greeting)
        if self.kind == "llm":
            return LlmTurnHandler(self._llm_url, settings.call.llm_system_prompt,
                                  settings.call.llm_max_tokens, greeting=settings.call.greeting)
        from intents.dialogue.manager import LlmPhraser, TurnManager

        parts = self._manager_parts
        phraser = agent = None
        if settings.call.llm_phrasing:
            phraser = LlmPhraser(settings.models.llm_url)
        if settings.call.llm_answers:
            from intents.dialogue.agent import LlmAgent
            from intents.dialogue.tools import Tools
            from models.llm_client import chat_client

            agent = LlmAgent(chat_client(settings.models.llm_url), Tools(parts["crm"]),
                             prompt_file=parts["prompt_file"])
        from intents.dialogue.escalation import EscalationPolicy

        manager = TurnManager(parts["menu"], parts["classifier"], parts["crm"],
                              parts["embedder"], phraser, agent,
                              escalation=EscalationPolicy(settings.handoff.escalation),
                              fallback=parts["fallback"])
        manager.state.flow_version = parts["version"]
        return manager

    @property
    def crm(self):
        return self._manager_parts["crm"] if self._manager_parts else None

    async def aclose(self) -> None:
        fallback = (self._manager_parts or {}).get("fallback")
        if fallback is not None:
            await fallback.aclose()
        self.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def model_choices(settings: IvrSettings) -> dict[str, str]:
    """The model choices a flow bundle records: what recognizes, understands and speaks."""
    m = settings.models
    return {"asr_model": m.asr_model, "embedding_model": m.embedding_model,
            "tts_voice": m.tts_voice}
