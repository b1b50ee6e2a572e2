/**
 * The scenario layer's public face: scenarios as data, the seeded scheduler
 * that runs their agents over model time, scenario files, and the seed suite.
 */

export * from './explain.js';
export { parseScenario } from './parse.js';
export { describeExpectation, scenarioReportJson } from './report.js';
export { type BuiltinRun, type BuiltinScenario, registerBuiltin, runMatrix, runScenario } from './run.js';
export {
  type Agent,
  type AgentBody,
  MAX_STEPS,
  RunContext,
  runAgents,
  type WaitCondition,
  wait,
  type Yielded,
} from './runtime.js';
export { builtinScenarios, CATALOGUE } from './suite/index.js';
export type {
  AgentSpec,
  BufferSetup,
  BuiltinBody,
  DeclarativeBody,
  DeviceSetup,
  FinalCondition,
  HeapBufferSetup,
  MatrixResult,
  MatrixRow,
  MemoryBufferSetup,
  PagesBufferSetup,
  RunOptions,
  Scenario,
  ScenarioBody,
  ScenarioMachineOptions,
  ScenarioMatrixOptions,
  ScenarioResult,
  StepSpec,
  TimelineEntry,
} from './types.js';
