package store

// PublishAll is publishAll for the package's external tests and benchmarks.
var PublishAll = publishAll
