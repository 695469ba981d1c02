// The source layout's rules, checked by `npm run lint` (dependency-cruiser):
// no import cycle between files; folders by role, each importing only the
// ones below it; one adapter file per external system; a pure pipeline.
// Type-only imports count: a type that runs back up a layer is a cycle too.

/** Top to bottom: a folder (or top-level file) may import only the ones after it. */
const LAYERS = ['cli', 'service', 'stream', 'versions', 'config', 'model', 'records', 'kafka', 'observability', 'backoff', 'pipeline', 'paths', 'errors'];

const path = (unit) => `^src/${unit}(/|\\.ts$)`;

const layering = LAYERS.slice(1).map((unit, i) => ({
  name: `layers-${unit}`,
  comment: `${unit} is below ${LAYERS.slice(0, i + 1).join(', ')}: it must not import them (fold what it needs downward)`,
  severity: 'error',
  from: { path: path(unit) },
  to: { path: LAYERS.slice(0, i + 1).map(path) },
}));

const onlyImporter = (pkg, file) => ({
  name: `only-${file.replace(/[/.]/g, '-')}-imports-${pkg.replace(/[@/]/g, '')}`,
  comment: `one adapter file per external system: only src/${file} imports ${pkg}`,
  severity: 'error',
  from: { path: '^src/', pathNot: `^src/${file.replace('.', '\\.')}$` },
  to: { path: `node_modules/${pkg.replace('/', '\\/')}/` },
});

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'no import cycle between files',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    ...layering,
    onlyImporter('kafkajs', 'kafka/adapter.ts'),
    onlyImporter('onnxruntime-node', 'model/onnx-session.ts'),
    onlyImporter('@kafkajs/confluent-schema-registry', 'records/registry.ts'),
    {
      name: 'pure-pipeline',
      comment: 'src/pipeline is pure functions: it imports only itself, the error table, fp-ts and node: built-ins',
      severity: 'error',
      from: { path: '^src/pipeline/' },
      to: { pathNot: ['^src/pipeline/', '^src/errors\\.ts$', 'node_modules/fp-ts/'], dependencyTypesNot: ['core'] },
    },
    {
      name: 'no-unresolvable',
      comment: 'every import resolves',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'] },
  },
};
