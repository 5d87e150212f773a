package connection

import "errors"

var (
	// ErrNotBool is wrapped, with the variable's name, by Bool and FromEnv
	// when a boolean variable holds none of the accepted spellings (see
	// Bool). The value itself is not shown.
	ErrNotBool = errors.New("not a boolean: want true/false, yes/no, on/off, enabled/disabled or 1/0")

	// ErrPlaintext is wrapped, with the variables involved, by FromEnv and
	// Settings.RegistryClient when a setting meant for an encrypted
	// connection meets a plaintext one: a CA or client certificate with
	// TLS off or an http:// registry URL, SASL PLAIN or OAUTHBEARER without
	// TLS, registry credentials over http:// to a host that is not
	// loopback. The package documentation lists the opt-outs.
	ErrPlaintext = errors.New("refusing a plaintext connection")

	// ErrFileTooLarge is wrapped, with the variable's name, when a file a
	// variable names (VAR_FILE, a CA or client certificate) holds more than
	// the package reads: 64 KiB for a secret, 1 MiB for PEM files.
	ErrFileTooLarge = errors.New("file too large")
)
