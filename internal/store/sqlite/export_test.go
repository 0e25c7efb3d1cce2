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

// StreamingAnswersSQL is the query of StreamingAnswers, for the test of
// its plan.
var StreamingAnswersSQL = streamingAnswersSQL
