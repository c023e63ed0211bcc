// A small, dependency-free GLB player for avitalk's exports (WebGL 1).
//
// It reads exactly what avitalk.face.export_gltf writes: one mesh (POSITION, NORMAL, optional COLOR_0,
// uint32 indices, morph targets with POSITION deltas), an animation whose sampler 0 drives the morph
// weights and, when present, sampler 1 the rotation of the "head" node (the face node under it is
// translated by -pivot). Morphing and normals are computed on the CPU each frame; WebGL draws.
// Time comes from the caller (e.g. an <audio> element's currentTime), so sound and face stay in sync.

const FLOAT = 5126, UINT = 5125, USHORT = 5123, UBYTE = 5121;
const SIZES = { SCALAR: 1, VEC2: 2, VEC3: 3, VEC4: 4 };

export function parseGLB(buffer) {
  const view = new DataView(buffer);
  if (view.getUint32(0, true) !== 0x46546c67) throw new Error('not a GLB file');
  let offset = 12, json = null, bin = null;
  while (offset < buffer.byteLength) {
    const length = view.getUint32(offset, true), type = view.getUint32(offset + 4, true);
    const start = offset + 8;
    if (type === 0x4e4f534a) json = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, start, length)));
    else if (type === 0x004e4942) bin = buffer.slice(start, start + length);
    offset = start + length;
  }
  if (!json || !bin) throw new Error('GLB without JSON or BIN chunk');
  const accessor = (i) => {
    const a = json.accessors[i], bv = json.bufferViews[a.bufferView];
    const n = a.count * SIZES[a.type];
    const byteOffset = (bv.byteOffset || 0) + (a.byteOffset || 0);
    const Type = { [FLOAT]: Float32Array, [UINT]: Uint32Array, [USHORT]: Uint16Array, [UBYTE]: Uint8Array }[a.componentType];
    if (!Type || (bv.byteStride && bv.byteStride !== Type.BYTES_PER_ELEMENT * SIZES[a.type])) throw new Error('unsupported accessor');
    return new Type(bin.slice(byteOffset, byteOffset + n * Type.BYTES_PER_ELEMENT));
  };
  const prim = json.meshes[0].primitives[0];
  const faceNode = json.nodes.findIndex((n) => n.mesh === 0);
  const head = json.nodes.findIndex((n) => n.name === 'head');
  const anim = json.animations[0];
  const out = {
    positions: accessor(prim.attributes.POSITION),
    normals: accessor(prim.attributes.NORMAL),
    colors: prim.attributes.COLOR_0 !== undefined ? accessor(prim.attributes.COLOR_0) : null,
    indices: accessor(prim.indices),
    targets: (prim.targets || []).map((t) => accessor(t.POSITION)),
    names: (json.meshes[0].extras || {}).targetNames || [],
    times: null, weights: null, rotations: null,
    pivot: head >= 0 ? json.nodes[head].translation || [0, 0, 0] : [0, 0, 0],
    fps: ((json.asset || {}).extras || {}).fps || 25,
  };
  for (const ch of anim.channels) {
    const s = anim.samplers[ch.sampler];
    out.times = accessor(s.input);
    if (ch.target.path === 'weights' && ch.target.node === faceNode) out.weights = accessor(s.output);
    if (ch.target.path === 'rotation' && ch.target.node === head) out.rotations = accessor(s.output);
  }
  return out;
}

const VS = `
attribute vec3 aPos; attribute vec3 aNormal; attribute vec3 aColor;
uniform mat4 uProj; uniform mat4 uView; uniform mat3 uRot; uniform vec3 uPivot;
varying vec3 vNormal; varying vec3 vColor; varying vec3 vPos;
void main() {
  vec3 p = uRot * (aPos - uPivot) + uPivot;
  vNormal = uRot * aNormal; vColor = aColor;
  vec4 v = uView * vec4(p, 1.0); vPos = v.xyz;
  gl_Position = uProj * v;
}`;
const FS = `
precision mediump float;
varying vec3 vNormal; varying vec3 vColor; varying vec3 vPos;
void main() {
  vec3 n = normalize(vNormal);
  float facing = gl_FrontFacing ? 1.0 : 0.2;
  vec3 key = normalize(vec3(-0.45, 0.5, 0.74)), fill = normalize(vec3(0.7, 0.05, 0.72));
  vec3 light = vec3(0.15) + 0.95 * max(dot(n, key), 0.0) + vec3(0.26, 0.28, 0.32) * max(dot(n, fill), 0.0);
  vec3 h = normalize(key + normalize(-vPos));
  vec3 c = vColor * light * facing + 0.08 * pow(max(dot(n, h), 0.0), 24.0) * facing;
  gl_FragColor = vec4(pow(c, vec3(1.0 / 2.2)), 1.0);
}`;

function perspective(fovy, aspect, near, far) {
  const f = 1 / Math.tan(fovy / 2), nf = 1 / (near - far);
  return new Float32Array([f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) * nf, -1, 0, 0, 2 * far * near * nf, 0]);
}

function quatToMat3(x, y, z, w) {
  return new Float32Array([
    1 - 2 * (y * y + z * z), 2 * (x * y + z * w), 2 * (x * z - y * w),
    2 * (x * y - z * w), 1 - 2 * (x * x + z * z), 2 * (y * z + x * w),
    2 * (x * z + y * w), 2 * (y * z - x * w), 1 - 2 * (x * x + y * y),
  ]);
}

export class FacePlayer {
  constructor(canvas, glb) {
    this.canvas = canvas;
    this.glb = glb;
    const gl = canvas.getContext('webgl', { antialias: true, preserveDrawingBuffer: true });
    if (!gl) throw new Error('WebGL is not available in this browser');
    if (!gl.getExtension('OES_element_index_uint')) throw new Error('WebGL lacks 32-bit indices');
    this.gl = gl;
    const nv = glb.positions.length / 3;
    this.nv = nv;
    this.pos = new Float32Array(glb.positions);
    this.nrm = new Float32Array(glb.normals);
    this.K = glb.targets.length;
    this.nFrames = glb.weights ? glb.weights.length / Math.max(1, this.K) : 1;
    const prog = gl.createProgram();
    for (const [type, src] of [[gl.VERTEX_SHADER, VS], [gl.FRAGMENT_SHADER, FS]]) {
      const s = gl.createShader(type);
      gl.shaderSource(s, src); gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
      gl.attachShader(prog, s);
    }
    gl.linkProgram(prog);
    if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
    this.prog = prog;
    const buffer = (data, target = gl.ARRAY_BUFFER, usage = gl.STATIC_DRAW) => {
      const b = gl.createBuffer(); gl.bindBuffer(target, b); gl.bufferData(target, data, usage); return b;
    };
    this.posBuf = buffer(this.pos, gl.ARRAY_BUFFER, gl.DYNAMIC_DRAW);
    this.nrmBuf = buffer(this.nrm, gl.ARRAY_BUFFER, gl.DYNAMIC_DRAW);
    let colors = glb.colors;
    if (!colors) { colors = new Float32Array(nv * 3); for (let i = 0; i < nv * 3; i += 3) colors.set([0.76, 0.53, 0.43], i); }
    this.colBuf = buffer(new Float32Array(colors));
    this.idxBuf = buffer(new Uint32Array(glb.indices), gl.ELEMENT_ARRAY_BUFFER);
    // camera: frame the neutral mesh's bounding box from +Z
    const lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    for (let i = 0; i < nv * 3; i++) { lo[i % 3] = Math.min(lo[i % 3], this.pos[i]); hi[i % 3] = Math.max(hi[i % 3], this.pos[i]); }
    const c = [0, 1, 2].map((k) => (lo[k] + hi[k]) / 2);
    const radius = Math.max(hi[0] - lo[0], hi[1] - lo[1]) * 0.62;
    const fov = 20 * Math.PI / 180, dist = radius / Math.tan(fov / 2) + (hi[2] - c[2]);
    this.view = new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, -c[0], -c[1], -c[2] - dist, 1]);
    this.proj = perspective(fov, 1, dist * 0.1, dist * 4);
    this.draw(0);
  }

  /** Pose and draw the face at time `t` seconds (clamped to the animation). */
  draw(t) {
    const { gl, glb, K, nv } = this;
    const f = Math.max(0, Math.min(this.nFrames - 1, t * glb.fps));
    const f0 = Math.floor(f), f1 = Math.min(this.nFrames - 1, f0 + 1), a = f - f0;
    const pos = this.pos;
    pos.set(glb.positions);
    if (glb.weights) {
      for (let k = 0; k < K; k++) {
        const w = (1 - a) * glb.weights[f0 * K + k] + a * glb.weights[f1 * K + k];
        if (Math.abs(w) < 1e-4) continue;
        const d = glb.targets[k];
        for (let i = 0; i < nv * 3; i++) pos[i] += w * d[i];
      }
    }
    this.computeNormals();
    let rot = new Float32Array([1, 0, 0, 0, 1, 0, 0, 0, 1]);
    if (glb.rotations) {
      const q = [0, 1, 2, 3].map((j) => (1 - a) * glb.rotations[f0 * 4 + j] + a * glb.rotations[f1 * 4 + j]);
      const n = Math.hypot(...q) || 1;
      rot = quatToMat3(q[0] / n, q[1] / n, q[2] / n, q[3] / n);
    }
    const size = Math.round(this.canvas.clientWidth * (window.devicePixelRatio || 1)) || 320;
    if (this.canvas.width !== size) { this.canvas.width = size; this.canvas.height = size; }
    gl.viewport(0, 0, this.canvas.width, this.canvas.height);
    gl.clearColor(0.085, 0.09, 0.1, 1);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.enable(gl.DEPTH_TEST);
    gl.disable(gl.CULL_FACE);
    gl.useProgram(this.prog);
    const attr = (name, buf, data) => {
      const loc = gl.getAttribLocation(this.prog, name);
      gl.bindBuffer(gl.ARRAY_BUFFER, buf);
      if (data) gl.bufferSubData(gl.ARRAY_BUFFER, 0, data);
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, 3, gl.FLOAT, false, 0, 0);
    };
    attr('aPos', this.posBuf, pos);
    attr('aNormal', this.nrmBuf, this.nrm);
    attr('aColor', this.colBuf, null);
    const u = (name) => gl.getUniformLocation(this.prog, name);
    gl.uniformMatrix4fv(u('uProj'), false, this.proj);
    gl.uniformMatrix4fv(u('uView'), false, this.view);
    gl.uniformMatrix3fv(u('uRot'), false, rot);
    gl.uniform3fv(u('uPivot'), new Float32Array(glb.pivot));
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, this.idxBuf);
    gl.drawElements(gl.TRIANGLES, glb.indices.length, gl.UNSIGNED_INT, 0);
  }

  computeNormals() {
    const p = this.pos, n = this.nrm, idx = this.glb.indices;
    n.fill(0);
    for (let t = 0; t < idx.length; t += 3) {
      const a = idx[t] * 3, b = idx[t + 1] * 3, c = idx[t + 2] * 3;
      const ux = p[b] - p[a], uy = p[b + 1] - p[a + 1], uz = p[b + 2] - p[a + 2];
      const vx = p[c] - p[a], vy = p[c + 1] - p[a + 1], vz = p[c + 2] - p[a + 2];
      const nx = uy * vz - uz * vy, ny = uz * vx - ux * vz, nz = ux * vy - uy * vx;
      for (const i of [a, b, c]) { n[i] += nx; n[i + 1] += ny; n[i + 2] += nz; }
    }
    for (let i = 0; i < n.length; i += 3) {
      const l = Math.hypot(n[i], n[i + 1], n[i + 2]);
      if (l > 0) { n[i] /= l; n[i + 1] /= l; n[i + 2] /= l; } else { n[i + 2] = 1; }
    }
  }
}
