package report

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The window the report is rendered in, in CSS pixels.
const shotWidth, shotHeight = 1280, 1000

// TestChromiumRender opens a real run's report in headless Chromium (Debian's chromium
// package): the page must load without a console message (a script error, or a
// Content-Security-Policy refusal of something the page tried to fetch), its DOM must
// name every stage, and its screenshot must show the timeline's bars painted.
func TestChromiumRender(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (Debian package chromium, installed by scripts/setup.sh): the report's real render is not checked")
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, recordRun(t), 0o644); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "shot.png")
	runChromium(t, bin, dir, "--screenshot="+shot, "file://"+page)
	dom, stderr := runChromium(t, bin, dir, "--dump-dom", "file://"+page)

	for _, line := range strings.Split(stderr, "\n") {
		if strings.Contains(line, ":CONSOLE") {
			t.Errorf("chromium logged a console message loading the report: %s", line)
		}
	}
	doc := parse(t, []byte(dom))
	rows, sections := timelineRows(t, doc), stageSections(doc)
	for _, name := range recordedStages {
		if _, ok := rows[name]; !ok {
			t.Errorf("chromium's DOM of the report has no timeline row for stage %s", name)
		}
		if _, ok := sections[name]; !ok {
			t.Errorf("chromium's DOM of the report has no details section for stage %s", name)
		}
	}

	guest := sparks(doc)
	for _, name := range recordedStages {
		if n := len(guest[name]); sampledStages[name] != nil && n != 2 {
			t.Errorf("chromium's DOM of the report has %d sparklines for sampled stage %s, want CPU and memory", n, name)
		}
	}

	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("chromium wrote no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	if b := img.Bounds(); b.Dx() != shotWidth || b.Dy() != shotHeight {
		t.Errorf("screenshot is %dx%d, want the window's %dx%d", b.Dx(), b.Dy(), shotWidth, shotHeight)
	}
	// The SVG spans the body's width (the window less 1.5em margins of 16px each side), so
	// a bar w viewBox units wide is painted w*scale pixels wide. The longest run of a
	// bar's colour on one pixel row must match that: a legend swatch or a badge is far
	// shorter, and a bar the stylesheet failed to colour has no run at all.
	scale := float64(shotWidth-2*24) / svgWidth
	runs := longestRuns(img)
	if len(runs) < 2 {
		t.Fatalf("screenshot is a single colour: nothing rendered")
	}
	for _, c := range []struct {
		stage string
		bar   int
		fill  color.RGBA
	}{
		{"branch-a", 0, color.RGBA{0x2e, 0x8b, 0x4f, 0xff}}, // ok
		{"flaky", 0, color.RGBA{0xe6, 0x7e, 0x22, 0xff}},    // the retried attempt
	} {
		bars := rows[c.stage].bars
		if len(bars) <= c.bar {
			continue // reported above
		}
		want := bars[c.bar].w * scale
		got := runs[c.fill]
		if diff := float64(got) - want; diff < -4 || diff > 4 {
			t.Errorf("stage %s bar %d: the longest run of its colour %v in the screenshot is %dpx, want %.0fpx (%.1f units at %.3f px/unit)",
				c.stage, c.bar+1, c.fill, got, want, bars[c.bar].w, scale)
		}
	}
	// The sparklines' filled areas are painted: flaky's single sample is a flat line at
	// half height across the sparkline's 240px, with its area below it.
	for _, c := range []struct {
		what string
		fill color.RGBA
	}{{"CPU", color.RGBA{0xc3, 0xe6, 0xec, 0xff}}, {"memory", color.RGBA{0xe5, 0xd0, 0xec, 0xff}}} {
		if got := runs[c.fill]; got < 200 || got > int(sparkWidth)+2 {
			t.Errorf("the longest run of the %s sparkline's area colour %v is %dpx, want about %.0fpx", c.what, c.fill, got, sparkWidth)
		}
	}
}

// longestRuns maps each colour to its longest horizontal run of pixels in img.
func longestRuns(img image.Image) map[color.RGBA]int {
	runs := map[color.RGBA]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		var prev color.RGBA
		n := 0
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			if x > b.Min.X && c == prev {
				n++
			} else {
				n = 1
			}
			prev = c
			runs[c] = max(runs[c], n)
		}
	}
	return runs
}

// runChromium runs headless chromium with args and returns its stdout and stderr. It
// runs as root in CI, where chromium's own sandbox cannot start, hence --no-sandbox:
// the page is our own file, and it has no script.
func runChromium(t *testing.T, bin, dir string, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-extensions", "--hide-scrollbars",
		"--enable-logging=stderr", "--v=0",
		"--user-data-dir=" + filepath.Join(dir, "profile"),
		"--window-size=" + strconv.Itoa(shotWidth) + "," + strconv.Itoa(shotHeight)}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstderr:\n%s", bin, strings.Join(args, " "), err, errb.String())
	}
	return out.String(), errb.String()
}
