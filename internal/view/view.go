// Package view builds the JSON objects the CLI prints (vm inspect/list, the vm status event
// stream, snapshot inspect/list, image inspect/list) from the engine's records. Their field
// names, nesting and JSON types are the original Cocoon's, which scripts and vk-cocoon parse;
// fields this implementation adds come after them and never change an original field.
//
// The on-disk indexes keep their own schema: a view is the one place that maps a record to the
// public shape, so internal fields can evolve without breaking consumers.
package view
