// Command goserver is a plain Go net/http server and client, for the proxy
// tests: Go's net package makes raw system calls, so LD_PRELOAD cannot
// reach either of them and only `noiseshim proxy` puts them on Noise.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

const usageText = `usage:
  goserver serve --listen ADDR --dir DIR   serve the files in DIR, and /hello
  goserver fetch --url URL --sha256 HEX    GET URL, check the body's SHA-256
  goserver time --url URL --count N        N requests, one connection each; prints
                                           the milliseconds to each response's headers
`

func serve(args []string) error {
	flags := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := flags.String("listen", "127.0.0.1:0", "address to listen on")
	dir := flags.String("dir", ".", "directory to serve")
	if err := flags.Parse(args); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServer(http.Dir(*dir)))
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello from go")
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", ln.Addr())
	return http.Serve(ln, mux)
}

func client() *http.Client {
	return &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	}
}

func get(c *http.Client, url string) ([]byte, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", url, resp.Status)
	}
	return data, err
}

func fetch(args []string) error {
	flags := flag.NewFlagSet("fetch", flag.ContinueOnError)
	url := flags.String("url", "", "URL")
	want := flags.String("sha256", "", "expected SHA-256 of the body, hex")
	if err := flags.Parse(args); err != nil {
		return err
	}
	data, err := get(client(), *url)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	got := hex.EncodeToString(sum[:])
	if got != *want {
		return fmt.Errorf("got %d bytes with SHA-256 %s, expected %s", len(data), got, *want)
	}
	fmt.Printf("ok %d bytes\n", len(data))
	return nil
}

func timeRequests(args []string) error {
	flags := flag.NewFlagSet("time", flag.ContinueOnError)
	url := flags.String("url", "", "URL")
	count := flags.Int("count", 1, "requests")
	if err := flags.Parse(args); err != nil {
		return err
	}
	c := client()
	for i := 0; i < *count; i++ {
		start := time.Now()
		resp, err := c.Get(*url)
		if err != nil {
			return err
		}
		elapsed := time.Since(start)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Printf("%.1f\n", float64(elapsed.Microseconds())/1000)
	}
	return nil
}

func main() {
	commands := map[string]func([]string) error{"serve": serve, "fetch": fetch, "time": timeRequests}
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		fmt.Fprint(os.Stderr, usageText)
		os.Exit(2)
	}
	if err := commands[os.Args[1]](os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "goserver:", err)
		os.Exit(1)
	}
}
