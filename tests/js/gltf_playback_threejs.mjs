// Play an avitalk GLB in three.js under Node (no DOM, no WebGL) and compare it with the motion.
//
//   node gltf_playback_threejs.mjs THREE_DIR FILE.glb EXPECTED.json
//
// THREE_DIR is an installed `three` package (e.g. `$(npm root -g)/three` after
// `npm install -g three@0.187.0`). EXPECTED.json (written by tests/test_face_threejs.py) holds
// `targetNames`, `headNode`, `tolerance` {weights, quaternion, vertices} and `checks`: a list of
// {t, weights, quaternion|null, vertexIndices, vertices} with the motion's values at time t.
// The script loads the GLB with GLTFLoader.parse, checks that every morph target name is in the
// mesh's morphTargetDictionary at its index, runs an AnimationMixer to each t, and compares
// morphTargetInfluences, the head node's quaternion and the CPU-morphed world-space vertex positions.
// It prints a JSON summary on stdout and exits 1 when a check fails.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [threeDir, glbPath, expectedPath] = process.argv.slice(2);
if (!threeDir || !glbPath || !expectedPath) {
	console.error('usage: node gltf_playback_threejs.mjs THREE_DIR FILE.glb EXPECTED.json');
	process.exit(2);
}
// Import `three` through the same file GLTFLoader's own `import ... from 'three'` resolves to
// (the package's "import" export), so both share one module instance.
const pkg = JSON.parse(readFileSync(join(threeDir, 'package.json'), 'utf8'));
const entry = pkg.exports?.['.']?.import ?? pkg.module ?? 'build/three.module.js';
const THREE = await import(pathToFileURL(join(threeDir, entry)).href);
const { GLTFLoader } = await import(pathToFileURL(join(threeDir, 'examples/jsm/loaders/GLTFLoader.js')).href);

const expected = JSON.parse(readFileSync(expectedPath, 'utf8'));
const bytes = readFileSync(glbPath);
const arrayBuffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);

const gltf = await new Promise((resolve, reject) => new GLTFLoader().parse(arrayBuffer, '', resolve, reject));
const failures = [];

let mesh = null;
gltf.scene.traverse((o) => { if (o.isMesh && o.morphTargetInfluences) mesh = o; });
if (!mesh) throw new Error('no mesh with morph targets in the GLB');
const dict = mesh.morphTargetDictionary;
const missing = expected.targetNames.filter((n, i) => dict[n] !== i);
if (missing.length) failures.push(`morph targets missing or out of order: ${missing.slice(0, 5).join(', ')}`);
if (mesh.morphTargetInfluences.length !== expected.targetNames.length) {
	failures.push(`${mesh.morphTargetInfluences.length} influences, expected ${expected.targetNames.length}`);
}
const head = expected.headNode ? gltf.scene.getObjectByName(expected.headNode) : null;
if (expected.headNode && !head) failures.push(`no node named ${expected.headNode}`);
if (gltf.animations.length !== 1) failures.push(`${gltf.animations.length} animations, expected 1`);

const mixer = new THREE.AnimationMixer(gltf.scene);
const action = mixer.clipAction(gltf.animations[0]);
action.setLoop(THREE.LoopOnce, 1);
action.clampWhenFinished = true;
action.play();

const err = { weights: 0, quaternion: 0, vertices: 0 };
const v = new THREE.Vector3();
for (const c of expected.checks) {
	mixer.setTime(c.t);
	gltf.scene.updateMatrixWorld(true);
	c.weights.forEach((w, k) => {
		err.weights = Math.max(err.weights, Math.abs(mesh.morphTargetInfluences[k] - w));
	});
	if (c.quaternion) {
		const q = head.quaternion;
		const got = [q.x, q.y, q.z, q.w];
		const sign = got.reduce((s, x, i) => s + x * c.quaternion[i], 0) < 0 ? -1 : 1; // q and -q: same rotation
		got.forEach((x, i) => { err.quaternion = Math.max(err.quaternion, Math.abs(sign * x - c.quaternion[i])); });
	}
	c.vertexIndices.forEach((idx, j) => {
		mesh.getVertexPosition(idx, v).applyMatrix4(mesh.matrixWorld);
		const want = c.vertices[j];
		err.vertices = Math.max(err.vertices, Math.abs(v.x - want[0]), Math.abs(v.y - want[1]), Math.abs(v.z - want[2]));
	});
}
for (const k of Object.keys(err)) {
	if (!(err[k] <= expected.tolerance[k])) failures.push(`${k}: max error ${err[k]} > ${expected.tolerance[k]}`);
}
const summary = {
	three: THREE.REVISION,
	targets: expected.targetNames.length,
	duration: gltf.animations[0].duration,
	tracks: gltf.animations[0].tracks.map((t) => t.name),
	checks: expected.checks.length,
	maxError: err,
	failures,
};
console.log(JSON.stringify(summary));
process.exit(failures.length ? 1 : 0);
