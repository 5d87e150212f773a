package migrate

import "context"

// MigrateUpTo applies the pending migrations up to version upTo.
func MigrateUpTo(ctx context.Context, db Beginner, opts Options, upTo int) error {
	_, err := migrate(ctx, db, opts, upTo)
	return err
}
