"""SIP through PJSIP (pjsua2): the endpoint thread, the media bridge and the call lifecycle."""
