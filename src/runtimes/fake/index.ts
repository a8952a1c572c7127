export { createFakeRuntime, type FakeRuntime, type FakeRuntimeOptions, type FakeStartBehaviour } from './fake-runtime.ts';
