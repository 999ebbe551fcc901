# An allocation-heavy Perl workload with a deterministic output: hashes,
# regular expressions, sorting, string building.  Run with PERL_HASH_SEED=0.
use strict;
use warnings;

my $seed = 42;
sub rnd {    # a small linear congruential generator: the same on every run
    my ($n) = @_;
    $seed = ($seed * 1103515245 + 12345) % 2147483648;
    return ($seed >> 16) % $n;
}

sub word {
    my $len = 1 + rnd(10);
    return join '', map { chr(97 + rnd(26)) } 1 .. $len;
}

# Hashes: build, update, delete, nest.
my %h;
for my $i (1 .. 80000) {
    my $k = word() . $i;
    $h{$k} = { n => $i, list => [ map { $_ * $i } 1 .. ($i % 7) ] };
}
my $deleted = 0;
for my $k (sort keys %h) {
    if ($h{$k}{n} % 3 == 0) { delete $h{$k}; $deleted++ }
}
my %by_len;
push @{ $by_len{ length $_ } }, $h{$_}{n} for keys %h;
my $sum = 0;
$sum += scalar(@{ $h{$_}{list} }) for keys %h;
print "hashes: ", scalar(keys %h), " deleted $deleted list items $sum\n";
for my $len (sort { $a <=> $b } keys %by_len) {
    my @v = sort { $a <=> $b } @{ $by_len{$len} };
    printf "  len %2d: %6d keys, first %d, last %d\n", $len, scalar @v, $v[0], $v[-1];
}

# Regular expressions over generated text.
my $text = join ' ', map { word() } 1 .. 200000;
my @vowel_runs = $text =~ /([aeiou]{3,})/g;
(my $swapped = $text) =~ s/\b(\w)(\w*)(\w)\b/$3$2$1/g;
my %first;
$first{$1}++ while $text =~ /\b(\w\w)/g;
my @top = (sort { $first{$b} <=> $first{$a} || $a cmp $b } keys %first)[0 .. 4];
print "regex: ", scalar @vowel_runs, " vowel runs, ", length $swapped, " chars, top @top\n";
my $count = () = $swapped =~ /q\w*u/g;
print "regex: $count q..u words\n";

# Sorting with a Schwartzian transform, and a big join/split.
my @records = map { [ word(), rnd(1000), $_ ] } 1 .. 100000;
my @sorted = map { $_->[2] }
  sort { $a->[1] <=> $b->[1] or $a->[0] cmp $b->[0] or $a->[2] <=> $b->[2] }
  map { [ $_->[0], $_->[1], $_->[2] ] } @records;
print "sort: @sorted[0 .. 4] ... @sorted[-3 .. -1]\n";
my $joined = join ',', map { "$_->[0]:$_->[1]" } @records;
my @back = split /,/, $joined;
print "split: ", scalar @back, " ", length $joined, "\n";

# Strings grown piece by piece (realloc all the way).
my $s = '';
$s .= chr(65 + $_ % 26) x ($_ % 100) for 1 .. 20000;
print "string: ", length $s, " ", substr($s, 1000, 20), "\n";
