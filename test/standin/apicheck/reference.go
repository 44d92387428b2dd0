package apicheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// ReferenceEnv names the variable that overrides where the API definitions are read from.
const ReferenceEnv = "COCOON_API_REFERENCE_DIR"

// The reference files, as the shared directory names them.
const (
	CloudHypervisorSpec = "cloud-hypervisor-openapi.yaml"
	FirecrackerSpec     = "firecracker-swagger.yaml"
)

// ReferenceDir returns the directory holding the hypervisor API definitions:
// $COCOON_API_REFERENCE_DIR when set, else shared/reference beside the repository root
// (found from the working directory, then from this source file). In a git worktree the
// main checkout's sibling is looked at too, since worktrees usually live elsewhere.
func ReferenceDir() (string, error) {
	if dir := os.Getenv(ReferenceEnv); dir != "" {
		if isDir(dir) {
			return dir, nil
		}
		return "", fmt.Errorf("API reference directory $%s=%s does not exist: point it at the shared/reference directory", ReferenceEnv, dir)
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if src := sourceDir(); src != "" {
		starts = append(starts, src)
	}
	return findReference(starts)
}

// findReference looks for shared/reference beside the repository holding each start dir.
func findReference(starts []string) (string, error) {
	var looked []string
	for _, root := range repoRoots(starts) {
		for _, cand := range referenceCandidates(root) {
			if slices.Contains(looked, cand) {
				continue
			}
			if isDir(cand) {
				return cand, nil
			}
			looked = append(looked, cand)
		}
	}
	if len(looked) == 0 {
		return "", fmt.Errorf("API reference directory not found: $%s is unset and no go.mod was found above %s; set $%s", ReferenceEnv, strings.Join(starts, " nor "), ReferenceEnv)
	}
	return "", fmt.Errorf("API reference directory not found: $%s is unset and %s does not exist; set $%s or put shared/ beside the repository", ReferenceEnv, strings.Join(looked, " nor "), ReferenceEnv)
}

// repoRoots lists the directories holding go.mod above each start dir, in order.
func repoRoots(starts []string) []string {
	var roots []string
	for _, start := range starts {
		if root, ok := findGoMod(start); ok && !slices.Contains(roots, root) {
			roots = append(roots, root)
		}
	}
	return roots
}

// referenceCandidates gives <root>/../shared/reference and, for a git worktree, the same
// beside the main checkout.
func referenceCandidates(root string) []string {
	cands := []string{filepath.Join(filepath.Dir(root), "shared", "reference")}
	if main, err := mainCheckout(root); err == nil && main != root {
		cands = append(cands, filepath.Join(filepath.Dir(main), "shared", "reference"))
	}
	return cands
}

// mainCheckout follows a worktree's .git file (gitdir: .../.git/worktrees/<name>) and its
// commondir back to the main checkout.
func mainCheckout(root string) (string, error) {
	data, err := os.ReadFile(filepath.Join(root, ".git"))
	if err != nil {
		return "", err // a directory (main checkout) or no git at all
	}
	gitdir, ok := strings.CutPrefix(strings.TrimSpace(string(data)), "gitdir:")
	if !ok {
		return "", errors.New("not a worktree .git file")
	}
	gitdir = strings.TrimSpace(gitdir)
	if !filepath.IsAbs(gitdir) {
		gitdir = filepath.Join(root, gitdir)
	}
	common, err := os.ReadFile(filepath.Join(gitdir, "commondir"))
	if err != nil {
		return "", err
	}
	dir := strings.TrimSpace(string(common))
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(gitdir, dir)
	}
	return filepath.Dir(filepath.Clean(dir)), nil
}

func findGoMod(dir string) (string, bool) {
	dir = filepath.Clean(dir)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// sourceDir is this file's directory at build time, for callers whose working directory
// is outside the repository.
func sourceDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return ""
	}
	return filepath.Dir(file)
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
