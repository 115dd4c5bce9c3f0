package migrate

// Test hooks for the external test package, which cannot be package migrate
// because it imports pgtest, which imports migrate.

// UpFS is Up with the migrations read from fsys instead of the embedded files.
var UpFS = up

// StatusFS is Status with the migrations read from fsys.
var StatusFS = status
