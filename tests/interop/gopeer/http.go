package main

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// maxPatternBytes bounds /bytes/N and /sha256/N, so that a typo cannot
// keep the server busy for hours.
const maxPatternBytes = 1 << 32

// patternStream is the body of /bytes/N: the SplitMix64 sequence started
// from state 0, each 64-bit output laid out little-endian. Clients can
// check a body against /sha256/N, or regenerate it in a few lines of C.
type patternStream struct {
	state uint64
	word  [8]byte
	// unread is how many bytes at the end of word are still to be returned.
	unread int
}

func (s *patternStream) next() uint64 {
	s.state += 0x9e3779b97f4a7c15
	z := s.state
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func (s *patternStream) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if s.unread == 0 {
			binary.LittleEndian.PutUint64(s.word[:], s.next())
			s.unread = len(s.word)
		}
		copied := copy(p[n:], s.word[len(s.word)-s.unread:])
		s.unread -= copied
		n += copied
	}
	return n, nil
}

func newHTTPHandler(fileDir string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/bytes/", servePatternBytes)
	mux.HandleFunc("/sha256/", servePatternDigest)
	if fileDir != "" {
		mux.Handle("/", http.FileServer(http.Dir(fileDir)))
	}
	return mux
}

// patternLength parses the N of /bytes/N or /sha256/N, answering the
// request itself when N is unusable.
func patternLength(w http.ResponseWriter, r *http.Request, route string) (int64, bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "only GET and HEAD", http.StatusMethodNotAllowed)
		return 0, false
	}
	length, err := strconv.ParseInt(strings.TrimPrefix(r.URL.Path, route), 10, 64)
	if err != nil || length < 0 || length > maxPatternBytes {
		http.Error(w, fmt.Sprintf("want %sN with 0 <= N <= %d", route, int64(maxPatternBytes)),
			http.StatusBadRequest)
		return 0, false
	}
	return length, true
}

func servePatternBytes(w http.ResponseWriter, r *http.Request) {
	length, ok := patternLength(w, r, "/bytes/")
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
	// A failed copy means the client went away; there is no one to tell.
	io.CopyN(w, &patternStream{}, length)
}

// servePatternDigest answers with the lowercase hex SHA-256 of the body of
// /bytes/N and a newline.
func servePatternDigest(w http.ResponseWriter, r *http.Request) {
	length, ok := patternLength(w, r, "/sha256/")
	if !ok {
		return
	}
	digest := sha256.New()
	io.CopyN(digest, &patternStream{}, length)
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "%x\n", digest.Sum(nil))
}
