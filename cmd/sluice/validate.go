package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/sluicehq/sluice/dispatch"
)

// Exit codes of `sluice validate`.
const (
	exitValid   = 0 // every address is valid (or there were none)
	exitInvalid = 1 // at least one address is invalid
	exitUsage   = 2 // bad flags, or standard input/output failed
)

// maxValidateLine bounds one line of standard input. Every channel rejects
// far shorter input, so a longer line can only be garbage (or not a text
// file at all).
const maxValidateLine = 1 << 20

const validateUsage = `usage: sluice validate --channel email|sms|push [--json] [ADDRESS...]

Validate recipient addresses with the same rules the workers apply, without
sending anything. Prints one line per address, in input order: "valid" or
"invalid: <reason>", where <reason> is the reason code also used in metrics
and the error log. The address itself is not repeated, so the output can be
zipped line by line with the input.

With no ADDRESS arguments, addresses are read from standard input, one per
line. Only the line ending ("\n" or "\r\n") is removed: surrounding spaces are
part of the address, and a blank line is an address (invalid: empty), but
a newline at the very end of the input does not start another one. Flags
must come before the addresses; put -- before an address starting with "-".

Exit status: 0 if every address is valid, 1 if any is invalid, 2 on a usage
error or if reading input or writing output fails.

Flags:
`

// validateResult is one line of `sluice validate --json` output.
type validateResult struct {
	Address string `json:"address"`
	Valid   bool   `json:"valid"`
	// Reason is the reason code, "" for a valid address.
	Reason string `json:"reason"`
	// Detail refines Reason in words; omitted for a valid address.
	Detail string `json:"detail,omitempty"`
}

// runValidate implements `sluice validate --channel email|sms|push [--json] ADDRESS...`.
func runValidate(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), validateUsage)
		fs.PrintDefaults()
	}
	channel := fs.String("channel", "", "address `channel`: email, sms or push (required)")
	jsonOut := fs.Bool("json", false, `print one JSON object per address: {"address", "valid", "reason", "detail"}`)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitValid
		}
		return exitUsage // fs has printed the error and the usage
	}
	if *channel == "" {
		fmt.Fprintln(stderr, "sluice validate: the --channel flag is required (email, sms or push)")
		return exitUsage
	}
	ch, err := dispatch.ParseChannel(*channel)
	if err != nil {
		fmt.Fprintf(stderr, "sluice validate: --channel: %v\n", err)
		return exitUsage
	}

	out := bufio.NewWriter(stdout)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	code := exitValid
	check := func(addr string) error {
		err := dispatch.Validate(ch, addr)
		if err != nil {
			code = exitInvalid
		}
		if *jsonOut {
			res := validateResult{Address: addr, Valid: err == nil}
			if e, ok := errors.AsType[*dispatch.InvalidAddressError](err); ok {
				res.Reason, res.Detail = string(e.Reason), e.Detail
			}
			return enc.Encode(res)
		}
		if err != nil {
			_, err = fmt.Fprintf(out, "invalid: %s\n", dispatch.ReasonOf(err))
			return err
		}
		_, err = io.WriteString(out, "valid\n")
		return err
	}

	var ioErr error
	if fs.NArg() > 0 {
		for _, addr := range fs.Args() {
			if ioErr = check(addr); ioErr != nil {
				break
			}
		}
	} else {
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 0, 4096), maxValidateLine)
		line := 0
		for ioErr == nil && sc.Scan() {
			line++
			ioErr = check(sc.Text())
		}
		switch err := sc.Err(); {
		case ioErr != nil:
		case errors.Is(err, bufio.ErrTooLong):
			ioErr = fmt.Errorf("line %d of standard input is longer than %d bytes", line+1, maxValidateLine)
		case err != nil:
			ioErr = fmt.Errorf("reading standard input: %w", err)
		}
	}
	if err := out.Flush(); ioErr == nil && err != nil {
		ioErr = err
	}
	if ioErr != nil {
		fmt.Fprintf(stderr, "sluice validate: %v\n", ioErr)
		return exitUsage
	}
	return code
}
