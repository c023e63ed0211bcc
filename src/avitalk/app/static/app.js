// avitalk web app: speech in (upload or microphone), instruction out (editable), faces played in sync.
import { FacePlayer, parseGLB } from '/static/viewer.js';

const $ = (id) => document.getElementById(id);
const state = { wav: null, players: [], info: null, raf: 0 };

function setStatus(text, isError = false) {
  const s = $('status');
  s.textContent = text;
  s.className = isError ? 'error' : 'muted';
}

// Decode any audio the browser can play, downmix + resample to 16 kHz mono, encode 16-bit WAV.
async function toWav16k(blob) {
  const data = await blob.arrayBuffer();
  const ctx = new (window.AudioContext || window.webkitAudioContext)();
  let decoded;
  try { decoded = await ctx.decodeAudioData(data); } finally { ctx.close(); }
  const rate = 16000, n = Math.max(1, Math.ceil(decoded.duration * rate));
  const off = new OfflineAudioContext(1, n, rate);
  const src = off.createBufferSource();
  src.buffer = decoded;
  src.connect(off.destination);
  src.start();
  const samples = (await off.startRendering()).getChannelData(0);
  const out = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const str = (o, s) => { for (let i = 0; i < s.length; i++) out.setUint8(o + i, s.charCodeAt(i)); };
  str(0, 'RIFF'); out.setUint32(4, 36 + samples.length * 2, true); str(8, 'WAVE'); str(12, 'fmt ');
  out.setUint32(16, 16, true); out.setUint16(20, 1, true); out.setUint16(22, 1, true);
  out.setUint32(24, rate, true); out.setUint32(28, rate * 2, true); out.setUint16(32, 2, true);
  out.setUint16(34, 16, true); str(36, 'data'); out.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) out.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, samples[i])) * 32767, true);
  return new Blob([out], { type: 'audio/wav' });
}

async function useAudio(blob, name) {
  setStatus('reading audio ...');
  try {
    state.wav = await toWav16k(blob);
  } catch (e) {
    setStatus(`cannot read this audio: ${e.message || e}`, true);
    return;
  }
  $('audio').src = URL.createObjectURL(state.wav);
  $('audio-name').textContent = name;
  $('go').disabled = false;
  $('instruction').value = '';
  await animate();
}

async function animate() {
  if (!state.wav) return;
  const params = new URLSearchParams({ samples: $('samples').value, seed: $('seed').value });
  const text = $('instruction').value.trim();
  if (text) params.set('instruction', text);
  $('go').disabled = true;
  setStatus(text ? 'animating ...' : 'reading the instruction from the voice and animating ...');
  try {
    const res = await fetch(`/api/animate?${params}`, { method: 'POST', body: state.wav, headers: { 'Content-Type': 'audio/wav' } });
    const job = await res.json();
    if (!res.ok) throw new Error(job.error || res.statusText);
    $('instruction').value = job.instruction;
    $('instruction-used').textContent = (job.described ? 'Predicted instruction: ' : 'Instruction: ') + job.instruction;
    $('download-instruction').href = job.files.instruction;
    await showSamples(job);
    const t = Object.entries(job.timings).map(([k, v]) => `${k} ${v.toFixed(2)} s`).join(', ');
    setStatus(`done (${t})`);
  } catch (e) {
    setStatus(`error: ${e.message || e}`, true);
  } finally {
    $('go').disabled = false;
  }
}

async function showSamples(job) {
  const box = $('viewers');
  box.innerHTML = '';
  state.players = [];
  $('result').hidden = false;
  for (const s of job.samples) {
    const div = document.createElement('div');
    div.className = 'viewer';
    const title = document.createElement('strong');
    title.textContent = job.samples.length > 1 ? `Sample ${s.index + 1}` : 'Result';
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 320;
    canvas.dataset.sample = String(s.index);
    const links = document.createElement('div');
    links.className = 'links';
    for (const [fmt, label] of [['glb', 'GLB'], ['csv', 'ARKit CSV'], ['npz', 'NPZ'], ['mp4', 'MP4 video']]) {
      const a = document.createElement('a');
      a.href = s.files[fmt]; a.textContent = label; a.download = '';
      links.appendChild(a);
    }
    div.append(title, canvas, links);
    box.appendChild(div);
    const buf = await (await fetch(s.files.glb)).arrayBuffer();
    try {
      state.players.push(new FacePlayer(canvas, parseGLB(buf)));
    } catch (e) {
      const p = document.createElement('p');
      p.className = 'error';
      p.textContent = `cannot show the face: ${e.message || e} (the downloads still work)`;
      div.insertBefore(p, links);
    }
  }
  document.body.dataset.ready = String(state.players.length);
  drawAll();
}

function drawAll() {
  const t = $('audio').currentTime || 0;
  for (const p of state.players) p.draw(t);
}

function loop() {
  drawAll();
  state.raf = $('audio').paused ? 0 : requestAnimationFrame(loop);
}

$('audio').addEventListener('play', () => { if (!state.raf) state.raf = requestAnimationFrame(loop); });
$('audio').addEventListener('seeked', drawAll);
$('audio').addEventListener('timeupdate', () => { if ($('audio').paused) drawAll(); });
$('play').addEventListener('click', () => { const a = $('audio'); a.currentTime = 0; a.play(); });
$('go').addEventListener('click', animate);
$('file').addEventListener('change', (e) => { const f = e.target.files[0]; if (f) useAudio(f, f.name); });

$('add-segment').addEventListener('click', () => {
  const box = $('instruction');
  const t = Math.round(($('audio').currentTime || 0) * 10) / 10;
  let text = box.value.trim();
  if (text && !/^\s*[\d.]+\s*(ms|s|m)?\s*-/.test(text)) text = `0-${t}s: ${text}`;
  else if (text) text = text.replace(/([\d.]+\s*(?:ms|s|m)?)\s*-\s*:(?=[^;]*$)/, (m, start) => `${start}-${t}s:`);
  box.value = (text ? `${text}; ` : '') + `${t}s-: `;
  box.focus();
});

let recorder = null;
$('record').addEventListener('click', async () => {
  const btn = $('record');
  if (recorder) { recorder.stop(); return; }
  if (!navigator.mediaDevices || !window.MediaRecorder) { setStatus('recording is not supported by this browser', true); return; }
  let stream;
  try { stream = await navigator.mediaDevices.getUserMedia({ audio: true }); } catch (e) { setStatus(`no microphone: ${e.message || e}`, true); return; }
  const parts = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => parts.push(e.data);
  recorder.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    recorder = null;
    btn.textContent = 'Record'; btn.classList.remove('recording');
    useAudio(new Blob(parts, { type: parts[0] ? parts[0].type : 'audio/webm' }), 'recording');
  };
  recorder.start();
  btn.textContent = 'Stop'; btn.classList.add('recording');
  setStatus('recording ... press Stop when done');
});

fetch('/api/info').then((r) => r.json()).then((info) => {
  state.info = info;
  $('info').textContent = `${info.space} · ${info.fps} fps · stage 1 ${info.stage1 ? 'on' : 'off (give an instruction)'} · up to ${info.max_seconds} s`;
  for (const o of $('samples').options) o.disabled = Number(o.value) > info.max_samples;
});
