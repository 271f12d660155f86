"""sipp scenarios, written out as the SIP they send: each test reads like the protocol."""

from __future__ import annotations

SDP_PCMU = """v=0
o=caller 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
"""

SDP_G729_ONLY = """v=0
o=caller 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 18
a=rtpmap:18 G729/8000
"""


def invite(sdp: str = SDP_PCMU, caller: str = "+15550000001", extra: str = "") -> str:
    return f"""  <send retrans="500">
    <![CDATA[
      INVITE sip:+18005550100@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Alex Morgan" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:+18005550100@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:{caller}@[local_ip]:[local_port]>
      Max-Forwards: 70
      {extra}Content-Type: application/sdp
      Content-Length: [len]

{sdp}
    ]]>
  </send>
"""


ACK = """  <send>
    <![CDATA[
      ACK sip:+18005550100@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Alex Morgan" <sip:+15550000001@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:+15550000001@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""

BYE = """  <send retrans="500">
    <![CDATA[
      BYE sip:+18005550100@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Alex Morgan" <sip:+15550000001@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:+15550000001@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
"""

CANCEL = """  <send>
    <![CDATA[
      CANCEL sip:+18005550100@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-4]
      From: "Alex Morgan" <sip:+15550000001@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:+18005550100@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""

def ack_failure(invite_back: int) -> str:
    """ACK of a final non-2xx response: same branch as the INVITE ``invite_back`` steps back."""
    return ACK_FAILURE.replace("[branch-N]", f"[branch-{invite_back}]")


ACK_FAILURE = """  <send>
    <![CDATA[
      ACK sip:+18005550100@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-N]
      From: "Alex Morgan" <sip:+15550000001@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""


def scenario(name: str, body: str) -> str:
    return f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="{name}">\n{body}</scenario>\n'


def answered_call(steps: str) -> str:
    """INVITE, provisional responses, 200, ACK, then ``steps`` (media, pauses, BYE...)."""
    return (invite() + '  <recv response="100" optional="true"/>\n'
            '  <recv response="180" optional="true"/>\n'
            '  <recv response="183" optional="true"/>\n'
            '  <recv response="200" rtd="true"/>\n' + ACK + steps)


def play(pcap: str) -> str:
    return f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n'


def pause(ms: int) -> str:
    return f'  <pause milliseconds="{ms}"/>\n'


def refused(code: int, extra_check: str = "") -> str:
    """An INVITE answered with a final ``code`` (ACKed as RFC 3261 requires)."""
    return (invite() + '  <recv response="100" optional="true"/>\n'
            f'  <recv response="{code}">{extra_check}</recv>\n' + ack_failure(3))


def cancelled(after_ms: int) -> str:
    return (invite() + '  <recv response="100" optional="true"/>\n'
            '  <recv response="180"/>\n' + pause(after_ms) + CANCEL +
            '  <recv response="200"/>\n  <recv response="487"/>\n' + ack_failure(7))


OPTIONS = """  <send retrans="500">
    <![CDATA[
      OPTIONS sip:ivr@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:monitor@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: <sip:ivr@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
"""


def reinvite(direction: str, cseq: int) -> str:
    """A re-INVITE in the dialog putting the IVR on hold (sendonly) or back (sendrecv)."""
    sdp = SDP_PCMU.replace("a=ptime:20", f"a=ptime:20\na={direction}")
    return f"""  <send retrans="500">
    <![CDATA[
      INVITE sip:+18005550100@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Alex Morgan" <sip:+15550000001@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:+15550000001@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

{sdp}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
  <send>
    <![CDATA[
      ACK sip:+18005550100@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Alex Morgan" <sip:+15550000001@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Contact: <sip:+15550000001@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""


def bye(cseq: int) -> str:
    return BYE.replace("CSeq: 2 BYE", f"CSeq: {cseq} BYE")
