"""The handoff settings section: defaults that work, mistakes refused with the field named."""

from __future__ import annotations

import pytest
import yaml

from handoff.settings import HandoffSettings


def test_defaults_and_a_settings_file_section():
    assert HandoffSettings().transfer_mode == "bridge"
    section = yaml.safe_load("""
        agent_uris: [sip:alice@pbx.test, sip:bob@pbx.test]
        transfer_mode: refer
        ring_timeout_s: 15
        webhook_urls: [https://crm.test/hooks/ivr]
        webhook_secret: s3cret
        desktop_tokens: [agent-token]
        escalation:
          intents: {technical_support: {tool_failures: 1}}
    """)
    settings = HandoffSettings.model_validate(section)
    assert settings.agent_uris[1] == "sip:bob@pbx.test"
    assert settings.webhook_secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)  # secrets stay out of logs
    assert settings.escalation.for_intent("technical_support").tool_failures == 1


@pytest.mark.parametrize(("section", "message"), [
    ({"webhook_urls": ["https://crm.test/hook"]}, "webhook_secret is empty"),
    ({"agent_uris": ["alice@pbx.test"]}, "must start with sip:"),
    ({"webhook_urls": ["crm.test/hook"], "webhook_secret": "x"}, "must start with http"),
    ({"transfer_mode": "replace"}, "bridge"),
    ({"ring_timout_s": 10}, "ring_timout_s"),
])
def test_mistakes_fail_at_start_up(section, message):
    with pytest.raises(ValueError, match=message):
        HandoffSettings.model_validate(section)
