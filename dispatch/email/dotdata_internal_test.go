package email

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"net/textproto"
	"testing"
)

// dotWriterOutput is what textproto's DotWriter and its Close write for msg.
func dotWriterOutput(msg []byte) []byte {
	var buf bytes.Buffer
	w := textproto.NewWriter(bufio.NewWriter(&buf))
	dw := w.DotWriter()
	dw.Write(msg)
	dw.Close()
	return buf.Bytes()
}

func writeDataOutput(msg []byte) []byte {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	writeData(bw, msg)
	bw.Flush()
	return buf.Bytes()
}

// TestWriteDataAgreesWithDotWriter: writeData writes byte for byte what
// DotWriter does, for edge cases and random messages over the bytes that
// matter ('.', CR, LF) and one that does not.
func TestWriteDataAgreesWithDotWriter(t *testing.T) {
	cases := []string{
		"", ".", "..", "\n", "\r", "\r\n", "\n\n", "\r\r\n", "\r\r\r\n", "a\r", "a\r\r", ".\r\n.\r\n",
		"Subject: x\r\n\r\nbody\r\n", "Subject: x\r\n\r\n.leading\r\n..two\r\nend", "bare\nlf\n.dot\n",
		"a\r.b\n", "a\rb", "\r.\n", "line\r\n.", "x\r\n\r\n", "\n.\n.\n",
	}
	for _, c := range cases {
		if got, want := writeDataOutput([]byte(c)), dotWriterOutput([]byte(c)); !bytes.Equal(got, want) {
			t.Errorf("%q: writeData %q, DotWriter %q", c, got, want)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte(".\r\na")
	for range 20000 {
		msg := make([]byte, rng.IntN(12))
		for i := range msg {
			msg[i] = alphabet[rng.IntN(len(alphabet))]
		}
		if got, want := writeDataOutput(msg), dotWriterOutput(msg); !bytes.Equal(got, want) {
			t.Fatalf("%q: writeData %q, DotWriter %q", msg, got, want)
		}
	}
}
