package migrate

import "context"

// MigrateUpTo applies the pending migrations up to version upTo.
func MigrateUpTo(ctx context.Context, db Beginner, opts Options, upTo int) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := migrateTx(ctx, tx, opts, upTo); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
