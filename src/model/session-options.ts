// The names configuration accepts for onnxruntime's session options. Kept apart
// from onnx-session.ts so that reading configuration never loads the native
// onnxruntime addon.

/** Our provider names → ORT's; one frozen table, as config accepts them. */
export const EXECUTION_PROVIDERS = Object.freeze({
  cpu: 'cpu',
  cuda: 'cuda',
  tensorrt: 'tensorrt',
  coreml: 'coreml',
  dml: 'dml',
  webgpu: 'webgpu',
} as const);

export type ExecutionProvider = keyof typeof EXECUTION_PROVIDERS;

export const isExecutionProvider = (name: string): name is ExecutionProvider => Object.hasOwn(EXECUTION_PROVIDERS, name);

export type GraphOptimizationLevel = 'disabled' | 'basic' | 'extended' | 'all';
