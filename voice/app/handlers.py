"""Turn handlers for calls: what is shared by every call of the process, and what each call owns.

The intent classifier is trained once from the menu and the embedded LLM server is started once;
each call gets its own handler (its own conversation state) over them.
"""

from __future__ import annotations

from intents.dialogue.simple import EchoTurnHandler, LlmTurnHandler
from intents.dialogue.turns import TurnHandler
from voice.app.settings import IvrSettings


class HandlerFactory:
    """Makes one ``TurnHandler`` per call of the configured kind (echo, llm, manager)."""

    def __init__(self, settings: IvrSettings) -> None:
        self.settings = settings
        self.kind = settings.call.handler
        self._server = None
        self._llm_url = settings.models.llm_url
        self._manager_parts = None
        if self.kind == "manager":
            self._manager_parts = self._build_manager_parts()
        elif self.kind == "llm" and self._llm_url is None:
            from models.llm_server import EmbeddedLlmServer
            from models.registry import shared_registry

            gguf = shared_registry(settings.models).llm_gguf_path()
            self._server = EmbeddedLlmServer(gguf, port=settings.models.llm_port)
            self._llm_url = self._server.start()

    def _build_manager_parts(self) -> dict:
        from handoff.crm import CrmStore
        from intents.classifier import IntentClassifier
        from intents.config import load_menu
        from intents.llm_fallback import LlmFallback
        from models.registry import shared_registry

        settings = self.settings
        if (settings.call.llm_phrasing or settings.call.llm_answers) \
                and not settings.models.llm_url:
            raise SystemExit("call.llm_phrasing and call.llm_answers need models.llm_url "
                             "(an OpenAI-compatible URL)")
        menu = load_menu(settings.call.menu)
        embedder = shared_registry(settings.models).embedder()
        classifier = IntentClassifier(embedder).fit(*menu.training_data())
        # One client for every call, and a menu that asks for it without an LLM URL fails here,
        # at start-up, rather than on the first call.
        fallback = LlmFallback.from_menu(menu, self._llm_url)
        return {"menu": menu, "classifier": classifier, "crm": CrmStore(settings.call.crm_url),
                "embedder": embedder, "fallback": fallback}

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

            agent = LlmAgent(chat_client(settings.models.llm_url), Tools(parts["crm"]))
        from intents.dialogue.escalation import EscalationPolicy

        return TurnManager(parts["menu"], parts["classifier"], parts["crm"], parts["embedder"],
                           phraser, agent,
                           escalation=EscalationPolicy(settings.handoff.escalation),
                           fallback=parts["fallback"])

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
