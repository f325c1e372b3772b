// Package applytest holds test suites shared by the applier and the
// engines that implement its Engine contract (Pebble in writernode, bbolt
// in readernode):
//
//   - RunEngineConformance checks an Engine against the contract in
//     applier/engine.go;
//   - RunModelCheck drives an Applier on an engine with a long random
//     sequence of requests and compares every answer with the kvmodel
//     reference model, across clean restarts and simulated crashes.
package applytest
