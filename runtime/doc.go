// Package runtime owns the stage graph and its executor: scheduling, concurrency,
// timeouts, retries, failure domains and data passing between stages. It defines the
// interfaces it consumes, Sandbox (a booted, isolated place to run a stage) and VMM
// (something that boots a microVM), and never imports a concrete driver.
package runtime
