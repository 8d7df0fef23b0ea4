package inspect
import ("testing"; "time")
func TestTmpScan(t *testing.T) {
	l := newLab(t, 67)
	c := start(t, helper(l.client, "many", l.link.A4+":8080", "4000"))
	ScanPIDs([]int{c.pid}, Options{})
	time.Sleep(200*time.Millisecond)
	t0 := time.Now()
	ScanPIDs([]int{c.pid}, Options{})
	t.Log("MARK", time.Since(t0))
}
