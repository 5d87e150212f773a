package registry

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Realm is the realm a registry with Config.BasicAuth names in its
// WWW-Authenticate challenge.
const Realm = "eventline"

// basicAuth checks HTTP Basic credentials against a fixed set of users.
// It keeps the SHA-256 of each password rather than the password: the
// digests have one length, so subtle.ConstantTimeCompare (which returns
// early on a length mismatch) does not reveal a password's length, and
// nothing that prints the struct can print a password.
type basicAuth struct {
	users map[string][sha256.Size]byte
}

// errBasicAuthUser is the reason New refuses a BasicAuth entry.
var errBasicAuthUser = errors.New("registry: BasicAuth needs a non-empty user without ':' and a non-empty password for each entry")

func newBasicAuth(users map[string]string) (*basicAuth, error) {
	a := &basicAuth{users: make(map[string][sha256.Size]byte, len(users))}
	for user, pass := range users {
		// A colon cannot be sent in the user part of Basic credentials
		// (RFC 7617 splits at the first one); an empty password would let
		// anybody who knows the user name in.
		if user == "" || strings.Contains(user, ":") || pass == "" {
			return nil, fmt.Errorf("%w (user %q)", errBasicAuthUser, user)
		}
		a.users[user] = sha256.Sum256([]byte(pass))
	}
	return a, nil
}

// allowed reports whether req carries the credentials of a known user.
func (a *basicAuth) allowed(req *http.Request) bool {
	user, pass, ok := req.BasicAuth()
	if !ok {
		return false
	}
	want, known := a.users[user]
	got := sha256.Sum256([]byte(pass))
	// Compare even for an unknown user, so that both answers take the
	// same time.
	match := subtle.ConstantTimeCompare(got[:], want[:]) == 1
	return known && match
}

// unauthorized is Confluent's answer to missing or wrong credentials.
var unauthorized = func() []byte {
	b, _ := json.Marshal(errf(http.StatusUnauthorized, http.StatusUnauthorized, "Unauthorized"))
	return append(b, '\n')
}()

// wrap refuses every request without valid credentials before next sees
// it: the body of a refused request is never read.
func (a *basicAuth) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !a.allowed(req) {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+Realm+`"`)
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write(unauthorized)
			return
		}
		next.ServeHTTP(w, req)
	})
}
