package sqlite

import "io/fs"

// Migrations returns the migrations Migrate applies, for the tests that
// also run them down.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err)
	}
	return sub
}
