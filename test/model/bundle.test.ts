import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadBundle } from '../../src/model/bundle.js';
import { CnerError } from '../../src/errors.js';
import { TAGS } from '../../src/pipeline/labels.js';
import { TABLE_BUNDLE, TABLE_VOCAB, TINY_BUNDLE, TINY_LEXICON_BUNDLE, bundleCopy } from './helpers.js';
import { withLinker } from './variants.js';

async function rejectsWith(promise: Promise<unknown>, code: string, pattern?: RegExp): Promise<CnerError> {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof CnerError, `expected a CnerError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return e;
  }
  assert.fail(`expected ${code}`);
}

async function withCopy(edit: (dir: string) => Promise<void>, test: (dir: string) => Promise<void>, rehash = true, source = TABLE_BUNDLE): Promise<void> {
  const { dir, cleanup } = await bundleCopy(edit, rehash, source);
  try {
    await test(dir);
  } finally {
    await cleanup();
  }
}

const editJson = async (file: string, f: (json: Record<string, unknown>) => unknown): Promise<void> => {
  await writeFile(file, JSON.stringify(f(JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>)));
};

const withoutFile = (manifest: Record<string, unknown>, name: string): Record<string, unknown> =>
  Object.fromEntries(Object.entries(manifest['files'] as object).filter(([k]) => k !== name));

describe('loadBundle', () => {
  it('loads a valid bundle into a frozen, typed object', async () => {
    const b = await loadBundle(TABLE_BUNDLE);
    assert.equal(b.version, '0.0.1-test');
    assert.equal(b.manifest.name, 'lexicon-test');
    assert.equal(b.manifest.trainingDataSha256, null);
    assert.equal(b.modelPath, path.join(TABLE_BUNDLE, 'model.onnx'));
    assert.deepEqual(b.labels, TAGS);
    assert.equal(b.vocab.size, TABLE_VOCAB.length);
    assert.equal(b.vocab.idOf('肺'), TABLE_VOCAB.indexOf('肺'));
    assert.equal(b.crf.numTags, 13);
    assert.ok(Object.isFrozen(b));
    assert.ok(Object.isFrozen(b.manifest.files));
  });

  it('loads the tiny bundle written by the Python side', async () => {
    const b = await loadBundle(TINY_BUNDLE);
    assert.equal(b.manifest.name, 'cner-tiny-random');
    assert.equal(b.manifest.trainingDataSha256, null); // "" in the file
    assert.deepEqual(b.labels, TAGS);
    assert.ok(b.vocab.size > 4000);
  });

  it('reports a missing directory as BUNDLE_NOT_FOUND', async () => {
    await rejectsWith(loadBundle('/nonexistent/bundle'), 'BUNDLE_NOT_FOUND', /does not exist/);
  });

  it('refuses a file whose sha256 differs from the manifest', async () => {
    await withCopy(
      (dir) => writeFile(path.join(dir, 'vocab.txt'), '[PAD]\n'),
      async (dir) => {
        const e = await rejectsWith(loadBundle(dir), 'BUNDLE_CHECKSUM_MISMATCH', /vocab\.txt .* has sha256 [0-9a-f]{64}, manifest\.json says/);
        assert.equal(e.context['file'], 'vocab.txt');
      },
      false,
    );
  });

  it('refuses a listed file that is missing', async () => {
    await withCopy(
      (dir) => rm(path.join(dir, 'crf.json')),
      async (dir) => void (await rejectsWith(loadBundle(dir), 'BUNDLE_NOT_FOUND', /crf\.json/)),
      false,
    );
  });

  it('requires the manifest to cover every bundle file and stay inside the bundle', async () => {
    await withCopy(
      (dir) =>
        editJson(path.join(dir, 'manifest.json'), (m) => {
          const files = { ...(m['files'] as Record<string, string>) };
          delete files['model.onnx'];
          return { ...m, version: '', files: { ...files, '../x': 'a'.repeat(64), 'labels.json': 'XYZ' } };
        }),
      async (dir) => {
        const e = await rejectsWith(loadBundle(dir), 'BUNDLE_INVALID');
        const errors = e.context['errors'] as string[];
        assert.ok(errors.includes('version must be a non-empty string'));
        assert.ok(errors.includes('files must list model.onnx'));
        assert.ok(errors.some((x) => x.includes('"../x" must be a relative path inside the bundle')));
        assert.ok(errors.includes('files.labels.json must be 64 lowercase hex digits'));
      },
      false,
    );
  });

  it('collects label, CRF, vocab and config problems in one error', async () => {
    await withCopy(
      async (dir) => {
        await writeFile(path.join(dir, 'labels.json'), JSON.stringify([...TAGS].reverse()));
        await editJson(path.join(dir, 'crf.json'), (c) => ({ ...c, start: [0] }));
        await writeFile(path.join(dir, 'vocab.txt'), '[PAD]\n[UNK]\n');
        await editJson(path.join(dir, 'config.json'), (c) => ({ ...c, max_length: 512, add_special_tokens: true }));
      },
      async (dir) => {
        const e = await rejectsWith(loadBundle(dir), 'BUNDLE_INVALID');
        const text = (e.context['errors'] as string[]).join('\n');
        assert.match(text, /labels\.json must be exactly/);
        assert.match(text, /crf\.json: start must be an array of 13 numbers/);
        assert.match(text, /vocab\.txt: vocab line 3 must be \[CLS\]/);
        assert.match(text, /config\.json: max_length must be 128, found 512/);
        assert.match(text, /config\.json: add_special_tokens must be false/);
      },
    );
  });

  it('reports malformed JSON as BUNDLE_INVALID', async () => {
    await withCopy(
      (dir) => writeFile(path.join(dir, 'config.json'), '{'),
      async (dir) => void (await rejectsWith(loadBundle(dir), 'BUNDLE_INVALID', /config\.json .* not valid JSON/)),
    );
  });
});

describe('loadBundle (a model that reads lexicon features)', () => {
  it('loads the lexicon when config.json names the lexicon_features input: lexicon.trie when listed, else lexicon.tsv, the same', async () => {
    const b = await loadBundle(TINY_LEXICON_BUNDLE);
    assert.ok(b.lexicon !== null && b.lexicon.terms > 10);
    assert.ok('lexicon.trie' in b.manifest.files);
    await withCopy(
      (dir) => editJson(path.join(dir, 'manifest.json'), (m) => ({ ...m, files: withoutFile(m, 'lexicon.trie') })),
      async (dir) => assert.deepEqual((await loadBundle(dir)).lexicon, b.lexicon),
      false,
      TINY_LEXICON_BUNDLE,
    );
    assert.equal((await loadBundle(TINY_BUNDLE)).lexicon, null);
  });

  it('reports a lexicon.trie that is not one', async () => {
    await withCopy(
      (dir) => writeFile(path.join(dir, 'lexicon.trie'), 'DIS\t肺炎\n'),
      (dir) => rejectsWith(loadBundle(dir), 'BUNDLE_INVALID', /lexicon\.trie: must start with CNERTRI1/).then(() => undefined),
      true,
      TINY_LEXICON_BUNDLE,
    );
  });

  it('refuses a lexicon model whose manifest does not cover lexicon.tsv', async () => {
    await withCopy(
      (dir) => editJson(path.join(dir, 'manifest.json'), (m) => ({ ...m, files: withoutFile(m, 'lexicon.tsv') })),
      (dir) => rejectsWith(loadBundle(dir), 'BUNDLE_INVALID', /files must list lexicon\.tsv/).then(() => undefined),
      false,
      TINY_LEXICON_BUNDLE,
    );
  });

  it('reports a malformed lexicon line and a wrong feature count', async () => {
    await withCopy(
      async (dir) => {
        await writeFile(path.join(dir, 'lexicon.tsv'), 'DIS\t肺炎\nNOPE\t术后\n');
        await editJson(path.join(dir, 'config.json'), (c) => ({ ...c, lexicon: { ...(c['lexicon'] as object), features: 30 } }));
        await editJson(path.join(dir, 'manifest.json'), (m) => ({ ...m, files: withoutFile(m, 'lexicon.trie') })); // the TSV is read
      },
      (dir) => rejectsWith(loadBundle(dir), 'BUNDLE_INVALID', /lexicon\.features must be 24[\s\S]*lexicon\.tsv: line 2 /).then(() => undefined),
      true,
      TINY_LEXICON_BUNDLE,
    );
  });

  describe('a bundle that carries its linker (linker/)', () => {
    it('reads the manifest\'s linker entry and points at linker/', async () => {
      const dir = await withLinker('with-linker');
      const b = await loadBundle(dir);
      assert.equal(b.linkerDir, path.join(dir, 'linker'));
      assert.deepEqual({ ...b.manifest.linker, metrics: { ...b.manifest.linker!.metrics } }, { name: 'cner-tiny-random-linker', version: 'tiny-linker-0', system: 'ICD-10-BJ-v601', metrics: { note: 'random weights, for tests only' } });
      assert.equal((await loadBundle(TINY_BUNDLE)).linkerDir, null);
      assert.equal((await loadBundle(TINY_BUNDLE)).manifest.linker, null);
    });

    it('checks the linker\'s files against their sha256 like the others', async () => {
      const dir = await withLinker('with-linker');
      await writeFile(path.join(dir, 'linker', 'names.tsv'), '伪造\tX99\n');
      const e = await rejectsWith(loadBundle(dir), 'BUNDLE_CHECKSUM_MISMATCH', /linker\/names\.tsv/);
      assert.equal(e.context['file'], 'linker/names.tsv');
    });

    it('refuses a half-described linker: files without the entry, an entry without linker/manifest.json, deeper paths', async () => {
      const edit = async (f: (m: Record<string, unknown>, files: Record<string, string>) => void): Promise<string[]> => {
        const dir = await withLinker('with-linker');
        await editJson(path.join(dir, 'manifest.json'), (m) => {
          const files = { ...(m['files'] as Record<string, string>) };
          f(m, files);
          return { ...m, files };
        });
        return (await rejectsWith(loadBundle(dir), 'BUNDLE_INVALID')).context['errors'] as string[];
      };
      assert.ok((await edit((m) => delete m['linker'])).some((x) => /files lists linker\/.* and there is no "linker" entry/.test(x)));
      assert.ok((await edit((_m, files) => delete files['linker/manifest.json'])).includes('files must list linker/manifest.json (the bundle has a "linker" entry)'));
      assert.ok((await edit((_m, files) => void (files['linker/deeper/x'] = files['linker/names.tsv']!))).includes('files: "linker/deeper/x" must be a file directly in linker/'));
      assert.ok((await edit((m) => void (m['linker'] = { name: 'x', version: '' }))).includes('linker.version must be a non-empty string'));
    });
  });
});
