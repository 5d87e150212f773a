package relay

import (
	"crypto/tls"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/eventline/eventline/migrate"
)

// parkable reports whether a failed event is parked rather than retried:
// Kafka refused it for good, the pipeline does not allow it, or it cannot
// be read.
func parkable(err error) bool {
	return permanent(err) || errors.Is(err, ErrNotAllowed) || errors.Is(err, errBadHeaders)
}

// ErrNotLeader is returned by operations that need leadership after it was
// lost (the lock connection died).
var ErrNotLeader = errors.New("relay lost leadership")

// permanent reports whether a produce error can never succeed for this
// record, so retrying would stall the outbox behind it forever. An
// authorization failure is not one of them: an operator fixes the ACL and the
// backlog flows, instead of every row of the topic being parked.
func permanent(err error) bool {
	for _, e := range []error{
		kerr.MessageTooLarge,
		kerr.RecordListTooLarge,
		kerr.InvalidTopicException,
		kerr.InvalidRecord,
		kerr.PolicyViolation,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

var (
	// ErrSlotInvalidated ends Run in logical mode when PostgreSQL
	// invalidated the replication slot (it held more WAL than
	// max_slot_wal_keep_size): the events it had not delivered are gone
	// from the WAL. Recovery: docs/operations.md, RecreateSlot.
	ErrSlotInvalidated = migrate.ErrSlotInvalidated
	// ErrSlotLost ends Run in logical mode when the slot eventline created
	// is gone (dropped, or a failover to a server without it).
	ErrSlotLost = migrate.ErrSlotLost
	// ErrPublicEmit ends Run in logical mode when every role of the
	// database may write logical decoding messages (see
	// Config.AllowPublicEmit, docs/operations.md).
	ErrPublicEmit = migrate.ErrPublicEmit
)

// ErrAlreadyRunning is returned by Run when Run was called before on the same
// Relay, whether that call still runs or has returned: a Relay runs once
// (create another with New).
var ErrAlreadyRunning = errors.New("relay: Run was already called on this Relay")

// unrecoverable reports whether err is one that waiting cannot heal, so Run
// returns it instead of retrying with backoff (the classification lives here
// alone). Retrying these would hide a deployment mistake behind a log line
// repeated forever, while a supervisor restarting a failed process shows it:
//
//   - PostgreSQL class 28 (invalid authorization: wrong password, no
//     pg_hba.conf entry), 3D000 (the database does not exist), 42P01 (the
//     outbox table does not exist: the migrations have not run, or not in
//     this schema) and 42501 (the role may not read, delete or park outbox
//     rows);
//   - in logical mode, a replication slot invalidated or lost, wal_level
//     not logical, a role without REPLICATION, a database where every
//     role may write events, or a relay role that may not write its
//     heartbeats (migrate's errors);
//   - Kafka SASL authentication failed, or a mechanism the broker does not
//     enable;
//   - a broker certificate that fails verification: not signed by a
//     trusted CA, expired, or not for the broker's name (a wrong
//     KAFKA_TLS_CA_FILE or server name);
//   - at startup only, a topic or cluster authorization failure (creating or
//     describing the topics): nothing was produced yet and an operator must
//     grant the ACL. Later, the same error on a produce stalls the relay
//     instead (see permanent), so the backlog flows once the ACL is fixed,
//     without a restart.
//
// Everything else heals, or may: refused connections and timeouts (the
// server is starting, the network is down), a database that is starting or
// shutting down (57P03, 57P01), too many connections (53300), a broker that
// cannot yet meet the replication factor.
func unrecoverable(err error, startup bool) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "28"), pe.Code == "3D000", pe.Code == "42P01", pe.Code == "42501":
			return true
		}
	}
	for _, e := range []error{migrate.ErrSlotInvalidated, migrate.ErrSlotLost, migrate.ErrNotLogical, migrate.ErrNoReplicationPrivilege, migrate.ErrPublicEmit, migrate.ErrEmitNotGranted} {
		if errors.Is(err, e) {
			return true
		}
	}
	// A transactional relay without an ACL on its transactional.id: only
	// an operator can grant it.
	if errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.UnsupportedSaslMechanism) || errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
		return true
	}
	if verify := (*tls.CertificateVerificationError)(nil); errors.As(err, &verify) {
		return true
	}
	return startup && (errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed))
}
