// The browser caller: places a WebRTC call to the IVR, shows both sides' words, and measures
// each reply's latency where the caller hears it: from the end of the caller's speech (the
// microphone's level) to the first audible sample of the reply (the received audio's level),
// both read on the same audio clock. Everything here is served by the IVR itself (no CDN).
"use strict";

const MIC_VOICE = 0.015;   // block RMS above which the caller is speaking (about -36 dBFS)
const REPLY_VOICE = 0.01;  // block RMS above which a reply is audible (-40 dBFS)
const MIN_GAP = 0.2;       // s; no turn ends sooner than this after speech (the IVR waits more)

const $ = (id) => document.getElementById(id);

const state = {
  pc: null, channel: null, stream: null, context: null, status: "ready",
  turns: [], latencies: [], recorded: [], sampleRate: 0, callId: null,
  lastMicVoice: null, spokeSinceReply: false, replyPlaying: false, lastReplyLoud: -1,
  micOnsets: [], remoteStart: null,  // audio clock times: caller speech starts, first sample heard
  micRecorded: [], micStart: null,  // what the microphone sent, from micStart on the same clock
};
window.ivrCall = state;  // read by tests and curious developers

function setStatus(text, status) {
  $("status").textContent = text;
  if (status) state.status = status;
}

function addLine(who, text, extra) {
  if (!text) return;
  const line = document.createElement("div");
  line.className = "line " + (who === "IVR" ? "ivr" : "caller");
  const name = document.createElement("span");
  name.className = "who";
  name.textContent = who;
  line.appendChild(name);
  line.appendChild(document.createTextNode(text));
  if (extra) {
    const span = document.createElement("span");
    span.className = "latency";
    span.textContent = extra;
    line.appendChild(span);
  }
  $("transcript").appendChild(line);
}

function onMic(message) {
  const {t, block, levels, samples} = message.data;
  if (state.micStart === null) state.micStart = t;
  samples.forEach((s) => state.micRecorded.push(s));
  levels.forEach((level, i) => {
    if (level > MIC_VOICE) {
      const at = t + i * block;
      if (state.lastMicVoice === null || at - state.lastMicVoice > 0.3) state.micOnsets.push(at);
      state.lastMicVoice = t + (i + 1) * block;
      state.spokeSinceReply = true;
    }
  });
}

function onRemote(message) {
  const {t, block, levels, samples} = message.data;
  if (state.remoteStart === null) state.remoteStart = t;
  samples.forEach((s) => state.recorded.push(s));
  levels.forEach((level, i) => {
    const at = t + i * block;
    if (level <= REPLY_VOICE) {
      if (state.replyPlaying && at - state.lastReplyLoud > 0.3) state.replyPlaying = false;
      return;
    }
    state.lastReplyLoud = at;
    if (state.replyPlaying) return;
    state.replyPlaying = true;
    // A reply answers the caller's speech once that has ended: sound that starts while the
    // caller is still talking (or within MIN_GAP of it) is not the answer to it.
    if (state.spokeSinceReply && state.lastMicVoice !== null
        && at - state.lastMicVoice >= MIN_GAP) {
      const ms = Math.round((at - state.lastMicVoice) * 1000);
      state.latencies.push(ms);
      state.spokeSinceReply = false;
      const row = document.createElement("tr");
      row.innerHTML = `<td>${state.latencies.length}</td><td>${ms}</td>`;
      $("latencies").querySelector("tbody").appendChild(row);
    }
  });
}

async function tap(stream, keep, handler) {
  const source = state.context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(state.context, "tap", {processorOptions: {keep}});
  node.port.onmessage = handler;
  const mute = state.context.createGain();
  mute.gain.value = 0;  // the worklet must be pulled, but the page plays through <audio>
  source.connect(node).connect(mute).connect(state.context.destination);
}

function onMessage(event) {
  let data;
  try { data = JSON.parse(event.data); } catch (error) { return; }
  if (data.type === "answered") {
    setStatus("In call", "in-call");
  } else if (data.type === "turn") {
    state.turns.push(data);
    addLine("You", data.caller_text);
    addLine("IVR", data.reply_text, data.total_ms != null ?
            `(${Math.round(data.total_ms)} ms in the IVR)` : "");
  } else if (data.type === "bye") {
    finish("The IVR ended the call", "ended");
  }
}

async function post(url, token, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${response.status}: ${data.detail || response.statusText}`);
  return data;
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(resolve, 3000);  // what was gathered by then is enough on a LAN
  });
}

async function call() {
  setStatus("Calling...", "calling");
  $("call").textContent = "Hang up";
  $("call").classList.add("active");
  try {
    const grant = await post("/api/webrtc/token", $("key").value.trim());
    state.context = new AudioContext();
    await state.context.audioWorklet.addModule("/call/assets/recorder-worklet.js");
    state.sampleRate = state.context.sampleRate;
    // Echo cancellation is the server's choice (webrtc.echo_cancellation): needed on
    // loudspeakers, but on a headset Chrome's canceller removes the caller's own voice while
    // our reply plays, until it has learnt there is no echo, and barge-in is lost.
    state.stream = await navigator.mediaDevices.getUserMedia({audio: {
      echoCancellation: grant.echo_cancellation !== false, noiseSuppression: false,
      autoGainControl: false}});
    await tap(state.stream, true, onMic);
    const pc = new RTCPeerConnection({iceServers: grant.ice_servers});
    state.pc = pc;
    state.stream.getTracks().forEach((track) => pc.addTrack(track, state.stream));
    state.channel = pc.createDataChannel("ivr");
    state.channel.onmessage = onMessage;
    pc.ontrack = (event) => {
      const remote = event.streams[0] || new MediaStream([event.track]);
      $("remote").srcObject = remote;  // Chrome feeds WebAudio a remote stream only if played
      tap(remote, true, onRemote);
    };
    pc.onconnectionstatechange = () => {
      if (["failed", "closed"].includes(pc.connectionState)) finish("Call ended", "ended");
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const answer = await post("/api/webrtc/offer", grant.token,
                              {type: "offer", sdp: pc.localDescription.sdp});
    state.callId = answer.call_id;
    await pc.setRemoteDescription({type: "answer", sdp: answer.sdp});
    setStatus("Connecting...", "connecting");
    $("mute").disabled = false;
  } catch (error) {
    finish("Call failed: " + error.message, "failed");
  }
}

function finish(text, status) {
  if (state.channel && state.channel.readyState === "open") {
    try { state.channel.send(JSON.stringify({type: "hangup"})); } catch (error) { /* closing */ }
  }
  if (state.pc) state.pc.close();
  if (state.stream) state.stream.getTracks().forEach((track) => track.stop());
  state.pc = null;
  setStatus(text, status);
  $("call").textContent = "Call";
  $("call").classList.remove("active");
  $("mute").disabled = true;
}

// The received (or, with "mic", the sent) audio so far, as base64 16-bit PCM at
// state.sampleRate (tests and benches read it).
state.recording = (which) => {
  const blocks = which === "mic" ? state.micRecorded : state.recorded;
  let n = 0;
  blocks.forEach((b) => { n += b.length; });
  const pcm = new Int16Array(n);
  let at = 0;
  blocks.forEach((b) => {
    for (let i = 0; i < b.length; i++) pcm[at++] = Math.max(-1, Math.min(1, b[i])) * 32767;
  });
  const bytes = new Uint8Array(pcm.buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
};

$("call").addEventListener("click", () => {
  if (state.pc) finish("You hung up", "ended"); else call();
});
$("mute").addEventListener("click", () => {
  const track = state.stream && state.stream.getAudioTracks()[0];
  if (!track) return;
  track.enabled = !track.enabled;
  $("mute").textContent = track.enabled ? "Mute" : "Unmute";
});
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("key")) $("key").value = fragment.get("key");
