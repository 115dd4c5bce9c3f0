package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/errorlog"
)

// Defaults of GET /v1/admin/errors/top.
const (
	DefaultTopWindow = 5 * time.Minute
	DefaultTopLimit  = 20
)

// maxBody bounds a request body.
const maxBody = 64 << 10

// TopErrorsReport is the body of GET /v1/admin/errors/top.
type TopErrorsReport struct {
	// Window is the window asked for, as a Go duration ("5m0s").
	Window        string     `json:"window"`
	Conversations []TopError `json:"conversations"`
}

// AdminRoutes returns the control plane's HTTP handlers by ServeMux pattern,
// for the API server to mount behind its admin authentication, which names
// the actor of changes with WithActor (else "anonymous"):
//
//	GET /v1/admin/errorlog      the mode and its last change: ErrorLogStatus
//	PUT /v1/admin/errorlog      change it; body {"mode": "sample", "first": 100, "then": 1000, "window": "1m"}
//	                            (first, then and window optional, for sample only); answers ErrorLogStatus
//	GET /v1/admin/errors/top    ?window=5m&limit=20: TopErrorsReport
//
// Errors are RFC 9457 problem documents (application/problem+json): 400 for
// a request that cannot be applied, 503 for the top errors of a Store
// without a database, 500 otherwise (including a change applied but not
// audited, which the detail says).
func (s *Store) AdminRoutes() map[string]http.Handler {
	return map[string]http.Handler{
		"GET /v1/admin/errorlog":   http.HandlerFunc(s.getErrorLog),
		"PUT /v1/admin/errorlog":   http.HandlerFunc(s.putErrorLog),
		"GET /v1/admin/errors/top": http.HandlerFunc(s.getTopErrors),
	}
}

func (s *Store) getErrorLog(w http.ResponseWriter, r *http.Request) {
	st, err := s.ErrorLogStatus(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// modeRequest is the body of PUT /v1/admin/errorlog.
type modeRequest struct {
	Mode   errorlog.ModeName `json:"mode"`
	First  int               `json:"first"`
	Then   int               `json:"then"`
	Window string            `json:"window"`
}

func (s *Store) putErrorLog(w http.ResponseWriter, r *http.Request) {
	var req modeRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeProblem(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Mode == "" {
		writeProblem(w, http.StatusBadRequest, `"mode" is required: full, sample, off or sync`)
		return
	}
	if _, err := errorlog.ParseModeName(string(req.Mode)); err != nil {
		writeProblem(w, http.StatusBadRequest, err.Error())
		return
	}
	m := errorlog.Mode{Name: req.Mode, First: req.First, Then: req.Then}
	if req.Mode != errorlog.ModeSample && (req.First != 0 || req.Then != 0 || req.Window != "") {
		writeProblem(w, http.StatusBadRequest, fmt.Sprintf(`"first", "then" and "window" apply to sample mode only, not %q`, req.Mode))
		return
	}
	if req.Window != "" {
		d, err := time.ParseDuration(req.Window)
		if err != nil || d <= 0 {
			writeProblem(w, http.StatusBadRequest, fmt.Sprintf(`"window" %q: want a positive duration such as "1m" or "30s"`, req.Window))
			return
		}
		m.Window = d
	}
	old, cur, err := s.setErrorLogMode(r.Context(), m, ActorFrom(r.Context()))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	prev := old.Value
	writeJSON(w, http.StatusOK, ErrorLogStatus{
		Mode: cur.Value, UpdatedBy: cur.By, UpdatedAt: cur.At, Revision: cur.Revision, Previous: &prev,
	})
}

func (s *Store) getTopErrors(w http.ResponseWriter, r *http.Request) {
	window, limit := DefaultTopWindow, DefaultTopLimit
	q := r.URL.Query()
	if v := q.Get("window"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			writeProblem(w, http.StatusBadRequest, fmt.Sprintf("window %q: want a duration such as 5m or 1h", v))
			return
		}
		window = d
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			writeProblem(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want a whole number from 1 to %d", v, MaxTopLimit))
			return
		}
		limit = n
	}
	if s.pool == nil {
		s.fail(w, r, ErrNoDatabase)
		return
	}
	top, err := TopErrors(r.Context(), s.pool, window, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, TopErrorsReport{Window: window.String(), Conversations: top})
}

// fail answers with the problem document of err.
func (s *Store) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrInvalid):
		writeProblem(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrStopped):
		writeProblem(w, http.StatusConflict, err.Error())
	case errors.Is(err, ErrConflict):
		writeProblem(w, http.StatusConflict, err.Error()+"; try again")
	case errors.Is(err, ErrNoDatabase):
		writeProblem(w, http.StatusServiceUnavailable, "this server has no database connection")
	case errors.Is(err, ErrAudit):
		// Logged by update.
		writeProblem(w, http.StatusInternalServerError, err.Error()+" (the change is in effect; repeating the request records it again)")
	default:
		s.log.Error("control: admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeProblem(w, http.StatusInternalServerError, err.Error())
	}
}

// decodeBody reads one JSON object from r's body into v, refusing unknown
// fields, trailing data and bodies over maxBody.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fmt.Errorf("body larger than %d bytes", maxBody)
		}
		if errors.Is(err, io.EOF) {
			return errors.New("empty body: want a JSON object")
		}
		return fmt.Errorf("body: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("body: want a single JSON object")
	}
	return nil
}
