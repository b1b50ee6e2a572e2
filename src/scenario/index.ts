/**
 * The scenario layer's public face: scenarios as data, the seeded scheduler
 * that runs their agents over model time, scenario files, and the seed suite.
 */

export * from './explain.js';
export type {
  AgentSpec,
  BufferSetup,
  BuiltinBody,
  DeclarativeBody,
  DeviceSetup,
  FinalCondition,
  MatrixResult,
  MatrixRow,
  RunOptions,
  Scenario,
  ScenarioBody,
  ScenarioMachineOptions,
  ScenarioMatrixOptions,
  ScenarioResult,
  StepSpec,
  TimelineEntry,
} from './types.js';
