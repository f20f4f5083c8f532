'use strict';
// Generates the benchmark models that are too large to commit into bench/models/ (git-ignored):
//   mlp_mid.onnx    512→2048→2048→512 MLP (~25 MB of weights)
//   resnet18.onnx   ResNet-18-shaped conv net, 3×224×224 → 1000 (~47 MB)
// Deterministic (seeded weights), pure Node (scripts/onnx-writer.js). bench/ runs it on demand;
// `node scripts/bench-models.js` regenerates everything.
const fs = require('node:fs');
const path = require('node:path');
const { encodeModel, mlp, resnet18 } = require('./onnx-writer');

const DIR = path.join(__dirname, '..', 'bench', 'models');

const MODELS = {
  'mlp_mid.onnx': () => mlp('mlp_mid', [512, 2048, 2048, 512], 3),
  'resnet18.onnx': () => resnet18('resnet18', { size: 224, classes: 1000, seed: 4 }),
};

/** The path of a benchmark model, generating it first when missing. */
function benchModel(file) {
  const p = path.join(DIR, file);
  if (!fs.existsSync(p)) {
    if (!MODELS[file]) throw new Error(`unknown benchmark model ${file}`);
    fs.mkdirSync(DIR, { recursive: true });
    fs.writeFileSync(`${p}.tmp`, encodeModel(MODELS[file](), { doc: `nimify benchmark model ${file} (random weights)` }));
    fs.renameSync(`${p}.tmp`, p);
  }
  return p;
}

if (require.main === module) {
  for (const f of Object.keys(MODELS)) {
    fs.rmSync(path.join(DIR, f), { force: true });
    console.log(benchModel(f), `${(fs.statSync(path.join(DIR, f)).size / 2 ** 20).toFixed(1)} MiB`);
  }
}

module.exports = { benchModel };
